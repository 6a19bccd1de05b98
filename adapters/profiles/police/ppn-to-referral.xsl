<?xml version="1.0" encoding="UTF-8"?>
<!--
  Police Public Protection Notice export (urn:example:police:ppn:2) to a
  canonical Referral. One notice per file. A notice that cannot be mapped
  stops the transform with "line|field|problem" (the adapter names the file).
  Codes outside the tables below are refused rather than guessed.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:p="urn:example:police:ppn:2"
    xmlns:ln="urn:mash-gateway:adapter-line"
    xmlns="urn:mash-gateway:v1"
    exclude-result-prefixes="p ln">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:template name="refuse">
    <xsl:param name="field"/>
    <xsl:param name="problem"/>
    <xsl:message terminate="yes">
      <xsl:value-of select="concat(@ln:line, '|', $field, '|', $problem)"/>
    </xsl:message>
  </xsl:template>

  <xsl:template match="/">
    <xsl:choose>
      <xsl:when test="not(p:PPNExport)">
        <xsl:for-each select="*">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'PPNExport'"/>
            <xsl:with-param name="problem" select="concat('the root is ', local-name(), ', not a PPNExport in urn:example:police:ppn:2')"/>
          </xsl:call-template>
        </xsl:for-each>
      </xsl:when>
      <xsl:when test="count(p:PPNExport/p:PPN) != 1">
        <xsl:for-each select="p:PPNExport">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'PPNExport/PPN'"/>
            <xsl:with-param name="problem" select="concat('holds ', count(p:PPN), ' notices; export exactly one per file')"/>
          </xsl:call-template>
        </xsl:for-each>
      </xsl:when>
      <xsl:otherwise>
        <xsl:apply-templates select="p:PPNExport/p:PPN"/>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="p:PPN">
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="p:Created"/>
      <xsl:with-param name="field" select="'PPN/Created'"/>
    </xsl:call-template>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="p:Child"/>
      <xsl:with-param name="field" select="'PPN/Child'"/>
    </xsl:call-template>
    <Referral schemaVersion="1.0">
      <ContactReceivedAt><xsl:value-of select="normalize-space(p:Created)"/></ContactReceivedAt>
      <Referrer>
        <Source>6</Source>
        <xsl:if test="p:Officer/p:Name"><Name><xsl:value-of select="normalize-space(p:Officer/p:Name)"/></Name></xsl:if>
        <xsl:if test="p:Officer/p:Rank"><Role><xsl:value-of select="normalize-space(p:Officer/p:Rank)"/></Role></xsl:if>
        <xsl:if test="p:Officer/p:Unit"><Organisation><xsl:value-of select="normalize-space(p:Officer/p:Unit)"/></Organisation></xsl:if>
        <xsl:apply-templates select="p:Officer" mode="contact"/>
      </Referrer>
      <Subjects>
        <xsl:apply-templates select="p:Child"/>
      </Subjects>
      <xsl:if test="p:Household/p:Person">
        <Household>
          <xsl:apply-templates select="p:Household/p:Person"/>
        </Household>
      </xsl:if>
      <Concerns>
        <xsl:if test="not(p:Occurrence/p:Category)">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'PPN/Occurrence/Category'"/>
            <xsl:with-param name="problem" select="'missing: a notice needs at least one category'"/>
          </xsl:call-template>
        </xsl:if>
        <xsl:apply-templates select="p:Occurrence/p:Category"/>
      </Concerns>
      <xsl:apply-templates select="p:Consent"/>
      <xsl:if test="not(p:Consent)">
        <xsl:call-template name="refuse">
          <xsl:with-param name="field" select="'PPN/Consent'"/>
          <xsl:with-param name="problem" select="'missing'"/>
        </xsl:call-template>
      </xsl:if>
      <Purpose>child-safeguarding</Purpose>
      <LawfulBasis>dpa-2018-part3-sch8-4</LawfulBasis>
      <LawfulBasis>ca-2004-s11</LawfulBasis>
      <Rag>
        <xsl:choose>
          <xsl:when test="@risk = 'HIGH'">Red</xsl:when>
          <xsl:when test="@risk = 'MEDIUM'">Amber</xsl:when>
          <xsl:when test="@risk = 'STANDARD'">Green</xsl:when>
          <xsl:otherwise>
            <xsl:call-template name="refuse">
              <xsl:with-param name="field" select="'PPN/@risk'"/>
              <xsl:with-param name="problem" select="'must be STANDARD, MEDIUM or HIGH'"/>
            </xsl:call-template>
          </xsl:otherwise>
        </xsl:choose>
      </Rag>
      <Narrative><xsl:value-of select="p:Occurrence/p:Summary"/></Narrative>
    </Referral>
  </xsl:template>

  <xsl:template name="required">
    <xsl:param name="node"/>
    <xsl:param name="field"/>
    <xsl:if test="not($node) or normalize-space($node) = ''">
      <xsl:call-template name="refuse">
        <xsl:with-param name="field" select="$field"/>
        <xsl:with-param name="problem" select="'missing or empty'"/>
      </xsl:call-template>
    </xsl:if>
  </xsl:template>

  <xsl:template match="p:Officer" mode="contact">
    <xsl:if test="p:Phone or p:Email">
      <Contact>
        <xsl:if test="p:Phone"><Phone><xsl:value-of select="normalize-space(p:Phone)"/></Phone></xsl:if>
        <xsl:if test="p:Email"><Email><xsl:value-of select="normalize-space(p:Email)"/></Email></xsl:if>
      </Contact>
    </xsl:if>
  </xsl:template>

  <xsl:template name="name">
    <xsl:param name="field"/>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="p:Forename"/>
      <xsl:with-param name="field" select="concat($field, '/Forename')"/>
    </xsl:call-template>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="p:Surname"/>
      <xsl:with-param name="field" select="concat($field, '/Surname')"/>
    </xsl:call-template>
    <Name>
      <Given><xsl:value-of select="normalize-space(p:Forename)"/></Given>
      <Family><xsl:value-of select="normalize-space(p:Surname)"/></Family>
    </Name>
  </xsl:template>

  <xsl:template name="identifiers">
    <xsl:for-each select="p:NHSNumber"><Identifier scheme="nhs-number"><xsl:value-of select="normalize-space(.)"/></Identifier></xsl:for-each>
    <xsl:for-each select="p:UPN"><Identifier scheme="upn"><xsl:value-of select="normalize-space(.)"/></Identifier></xsl:for-each>
    <xsl:for-each select="p:PNCID"><Identifier scheme="pnc-id"><xsl:value-of select="normalize-space(.)"/></Identifier></xsl:for-each>
  </xsl:template>

  <xsl:template match="p:Address">
    <Address>
      <xsl:for-each select="p:Line"><Line><xsl:value-of select="normalize-space(.)"/></Line></xsl:for-each>
      <xsl:if test="p:Postcode"><Postcode><xsl:value-of select="normalize-space(p:Postcode)"/></Postcode></xsl:if>
    </Address>
  </xsl:template>

  <xsl:template match="p:Child">
    <Subject ref="s1">
      <xsl:call-template name="name"><xsl:with-param name="field" select="'PPN/Child'"/></xsl:call-template>
      <xsl:call-template name="required">
        <xsl:with-param name="node" select="p:DOB"/>
        <xsl:with-param name="field" select="'PPN/Child/DOB'"/>
      </xsl:call-template>
      <DateOfBirth><xsl:value-of select="normalize-space(p:DOB)"/></DateOfBirth>
      <Sex>
        <xsl:choose>
          <xsl:when test="p:Gender = 'M'">male</xsl:when>
          <xsl:when test="p:Gender = 'F'">female</xsl:when>
          <xsl:otherwise>not-known</xsl:otherwise>
        </xsl:choose>
      </Sex>
      <xsl:apply-templates select="p:Address"/>
      <xsl:call-template name="identifiers"/>
      <Identifier scheme="local" system="{normalize-space(/p:PPNExport/@system)} PPN"><xsl:value-of select="../@ref"/></Identifier>
    </Subject>
  </xsl:template>

  <xsl:template match="p:Household/p:Person">
    <Member ref="m{position()}">
      <xsl:call-template name="name"><xsl:with-param name="field" select="'PPN/Household/Person'"/></xsl:call-template>
      <xsl:if test="p:DOB"><DateOfBirth><xsl:value-of select="normalize-space(p:DOB)"/></DateOfBirth></xsl:if>
      <xsl:apply-templates select="p:Address"/>
      <xsl:call-template name="identifiers"/>
      <Relationship subject="s1" livesWith="{@livesWithChild = 'Y'}">
        <xsl:attribute name="kind">
          <xsl:choose>
            <xsl:when test="@role = 'MOTHER'">mother</xsl:when>
            <xsl:when test="@role = 'FATHER'">father</xsl:when>
            <xsl:when test="@role = 'STEP_PARENT'">step-parent</xsl:when>
            <xsl:when test="@role = 'PARTNER_OF_PARENT'">parent-partner</xsl:when>
            <xsl:when test="@role = 'SIBLING'">sibling</xsl:when>
            <xsl:when test="@role = 'GRANDPARENT'">grandparent</xsl:when>
            <xsl:when test="@role = 'CARER'">carer</xsl:when>
            <xsl:when test="@role = 'OTHER'">other</xsl:when>
            <xsl:otherwise>
              <xsl:call-template name="refuse">
                <xsl:with-param name="field" select="'PPN/Household/Person/@role'"/>
                <xsl:with-param name="problem" select="concat('unknown role ', @role)"/>
              </xsl:call-template>
            </xsl:otherwise>
          </xsl:choose>
        </xsl:attribute>
      </Relationship>
    </Member>
  </xsl:template>

  <xsl:template match="p:Category">
    <xsl:variable name="code" select="normalize-space(.)"/>
    <Concern>
      <xsl:attribute name="code">
        <xsl:choose>
          <xsl:when test="$code = 'DOMESTIC_ABUSE'">3A</xsl:when>
          <xsl:when test="$code = 'NEGLECT'">NEG</xsl:when>
          <xsl:when test="$code = 'PHYSICAL'">PHY</xsl:when>
          <xsl:when test="$code = 'SEXUAL'">SAB</xsl:when>
          <xsl:when test="$code = 'EMOTIONAL'">EMO</xsl:when>
          <xsl:when test="$code = 'MISSING'">10A</xsl:when>
          <xsl:when test="$code = 'CSE'">11A</xsl:when>
          <xsl:when test="$code = 'CCE'">24A</xsl:when>
          <xsl:otherwise>
            <xsl:call-template name="refuse">
              <xsl:with-param name="field" select="'PPN/Occurrence/Category'"/>
              <xsl:with-param name="problem" select="concat('unknown category ', $code)"/>
            </xsl:call-template>
          </xsl:otherwise>
        </xsl:choose>
      </xsl:attribute>
    </Concern>
  </xsl:template>

  <xsl:template match="p:Consent">
    <Consent>
      <xsl:choose>
        <xsl:when test="@status = 'GIVEN'"><Given/></xsl:when>
        <xsl:when test="@status = 'REFUSED'"><Refused><Reason><xsl:value-of select="p:Reason"/></Reason></Refused></xsl:when>
        <xsl:when test="@status = 'NOT_SOUGHT'"><NotSought><Reason><xsl:value-of select="p:Reason"/></Reason></NotSought></xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'PPN/Consent/@status'"/>
            <xsl:with-param name="problem" select="'must be GIVEN, REFUSED or NOT_SOUGHT'"/>
          </xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
      <NecessaryAndProportionate><xsl:value-of select="../p:Justification"/></NecessaryAndProportionate>
      <xsl:choose>
        <xsl:when test="../p:Supervisor">
          <DecidedBy>
            <Name><xsl:value-of select="normalize-space(../p:Supervisor/p:Name)"/></Name>
            <Role><xsl:value-of select="normalize-space(../p:Supervisor/p:Rank)"/></Role>
          </DecidedBy>
          <DecidedAt><xsl:value-of select="normalize-space(../p:Supervisor/p:ReviewedAt)"/></DecidedAt>
        </xsl:when>
        <xsl:otherwise>
          <DecidedBy>
            <Name><xsl:value-of select="normalize-space(../p:Officer/p:Name)"/></Name>
            <Role><xsl:value-of select="normalize-space(../p:Officer/p:Rank)"/></Role>
          </DecidedBy>
          <DecidedAt><xsl:value-of select="normalize-space(../p:Created)"/></DecidedAt>
        </xsl:otherwise>
      </xsl:choose>
    </Consent>
  </xsl:template>
</xsl:stylesheet>
