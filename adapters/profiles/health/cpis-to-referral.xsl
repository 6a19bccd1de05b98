<?xml version="1.0" encoding="UTF-8"?>
<!--
  CP-IS style unscheduled-care notification (urn:example:health:cpis-notification:1)
  to a canonical Referral from health (referral source 3E, A&E; 3A otherwise).
  Refusals are "line|field|problem".
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:h="urn:example:health:cpis-notification:1"
    xmlns:ln="urn:mash-gateway:adapter-line"
    xmlns="urn:mash-gateway:v1"
    exclude-result-prefixes="h ln">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:template name="refuse">
    <xsl:param name="field"/>
    <xsl:param name="problem"/>
    <xsl:message terminate="yes">
      <xsl:value-of select="concat(@ln:line, '|', $field, '|', $problem)"/>
    </xsl:message>
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

  <xsl:template match="/">
    <xsl:if test="not(h:CPISNotification)">
      <xsl:for-each select="*">
        <xsl:call-template name="refuse">
          <xsl:with-param name="field" select="'CPISNotification'"/>
          <xsl:with-param name="problem" select="concat('the root is ', local-name(), ', not a CPISNotification in urn:example:health:cpis-notification:1')"/>
        </xsl:call-template>
      </xsl:for-each>
    </xsl:if>
    <xsl:apply-templates select="h:CPISNotification"/>
  </xsl:template>

  <xsl:template name="clinician">
    <Name><xsl:value-of select="normalize-space(/h:CPISNotification/h:Clinician/h:Name)"/></Name>
    <Role><xsl:value-of select="normalize-space(/h:CPISNotification/h:Clinician/h:Role)"/></Role>
    <Organisation><xsl:value-of select="normalize-space(/h:CPISNotification/h:Setting)"/></Organisation>
  </xsl:template>

  <xsl:template match="h:CPISNotification">
    <xsl:for-each select="h:Patient">
      <xsl:call-template name="required">
        <xsl:with-param name="node" select="h:BirthDate"/>
        <xsl:with-param name="field" select="'Patient/BirthDate'"/>
      </xsl:call-template>
      <xsl:call-template name="required">
        <xsl:with-param name="node" select="h:NHSNumber"/>
        <xsl:with-param name="field" select="'Patient/NHSNumber'"/>
      </xsl:call-template>
    </xsl:for-each>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="h:Clinician/h:Name"/>
      <xsl:with-param name="field" select="'Clinician/Name'"/>
    </xsl:call-template>
    <Referral schemaVersion="1.0">
      <ContactReceivedAt><xsl:value-of select="normalize-space(@sentAt)"/></ContactReceivedAt>
      <Referrer>
        <Source>
          <xsl:choose>
            <xsl:when test="h:Setting/@type = 'ED'">3E</xsl:when>
            <xsl:otherwise>3A</xsl:otherwise>
          </xsl:choose>
        </Source>
        <xsl:call-template name="clinician"/>
        <xsl:if test="h:Clinician/h:Phone">
          <Contact><Phone><xsl:value-of select="normalize-space(h:Clinician/h:Phone)"/></Phone></Contact>
        </xsl:if>
      </Referrer>
      <Subjects>
        <xsl:apply-templates select="h:Patient"/>
      </Subjects>
      <Concerns>
        <xsl:if test="not(h:Concern)">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'Concern'"/>
            <xsl:with-param name="problem" select="'missing: a notification needs at least one concern'"/>
          </xsl:call-template>
        </xsl:if>
        <xsl:apply-templates select="h:Concern"/>
      </Concerns>
      <xsl:apply-templates select="h:Consent"/>
      <Purpose>child-safeguarding</Purpose>
      <LawfulBasis>uk-gdpr-6-1-e</LawfulBasis>
      <LawfulBasis>uk-gdpr-9-2-h-dpa-sch1-2</LawfulBasis>
      <Rag>
        <xsl:choose>
          <xsl:when test="h:Attendance/@urgency = 'HIGH'">Red</xsl:when>
          <xsl:when test="h:Attendance/@urgency = 'MEDIUM'">Amber</xsl:when>
          <xsl:otherwise>Green</xsl:otherwise>
        </xsl:choose>
      </Rag>
      <Narrative>
        <xsl:value-of select="concat('Attendance at ', normalize-space(h:Setting), ' from ', h:Attendance/@start, '. ')"/>
        <xsl:if test="h:Patient/h:CPISFlag">
          <xsl:value-of select="concat('CP-IS flag ', h:Patient/h:CPISFlag/@type, ' since ', h:Patient/h:CPISFlag/@startDate, ' (', h:Patient/h:CPISFlag/@localAuthority, '). ')"/>
        </xsl:if>
        <xsl:for-each select="h:Concern"><xsl:value-of select="normalize-space(.)"/><xsl:text> </xsl:text></xsl:for-each>
      </Narrative>
    </Referral>
  </xsl:template>

  <xsl:template match="h:Patient">
    <Subject ref="s1">
      <Name>
        <Given><xsl:value-of select="normalize-space(h:GivenName)"/></Given>
        <Family><xsl:value-of select="normalize-space(h:FamilyName)"/></Family>
      </Name>
      <DateOfBirth><xsl:value-of select="normalize-space(h:BirthDate)"/></DateOfBirth>
      <Sex>
        <xsl:choose>
          <xsl:when test="h:Gender = 'male' or h:Gender = 'female'"><xsl:value-of select="h:Gender"/></xsl:when>
          <xsl:otherwise>not-known</xsl:otherwise>
        </xsl:choose>
      </Sex>
      <Identifier scheme="nhs-number"><xsl:value-of select="normalize-space(h:NHSNumber)"/></Identifier>
    </Subject>
  </xsl:template>

  <xsl:template match="h:Concern">
    <Concern>
      <xsl:attribute name="code">
        <xsl:choose>
          <xsl:when test="@category = 'INJURY'">PHY</xsl:when>
          <xsl:when test="@category = 'NEGLECT'">NEG</xsl:when>
          <xsl:when test="@category = 'SELF_HARM'">15A</xsl:when>
          <xsl:when test="@category = 'SEXUAL'">SAB</xsl:when>
          <xsl:when test="@category = 'DOMESTIC_ABUSE'">3A</xsl:when>
          <xsl:otherwise>
            <xsl:call-template name="refuse">
              <xsl:with-param name="field" select="'Concern/@category'"/>
              <xsl:with-param name="problem" select="concat('unknown category ', @category)"/>
            </xsl:call-template>
          </xsl:otherwise>
        </xsl:choose>
      </xsl:attribute>
      <xsl:value-of select="normalize-space(.)"/>
    </Concern>
  </xsl:template>

  <xsl:template match="h:Consent">
    <Consent>
      <xsl:choose>
        <xsl:when test="@status = 'GIVEN'"><Given/></xsl:when>
        <xsl:when test="@status = 'REFUSED'"><Refused><Reason><xsl:value-of select="h:Reason"/></Reason></Refused></xsl:when>
        <xsl:when test="@status = 'NOT_SOUGHT'"><NotSought><Reason><xsl:value-of select="h:Reason"/></Reason></NotSought></xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'Consent/@status'"/>
            <xsl:with-param name="problem" select="'must be GIVEN, REFUSED or NOT_SOUGHT'"/>
          </xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
      <NecessaryAndProportionate><xsl:value-of select="h:Justification"/></NecessaryAndProportionate>
      <DecidedBy><xsl:call-template name="clinician"/></DecidedBy>
      <DecidedAt><xsl:value-of select="@decidedAt"/></DecidedAt>
    </Consent>
  </xsl:template>
</xsl:stylesheet>
