<?xml version="1.0" encoding="UTF-8"?>
<!--
  Children's social care case-system export (urn:example:csc:case-export:1)
  to a canonical InformationResponse. A search with no Episode is a
  "no records found" answer naming the systems searched. Codes outside the
  tables below are refused with "line|field|problem".
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:c="urn:example:csc:case-export:1"
    xmlns:ln="urn:mash-gateway:adapter-line"
    xmlns="urn:mash-gateway:v1"
    exclude-result-prefixes="c ln">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:template name="refuse">
    <xsl:param name="field"/>
    <xsl:param name="problem"/>
    <xsl:message terminate="yes">
      <xsl:value-of select="concat(@ln:line, '|', $field, '|', $problem)"/>
    </xsl:message>
  </xsl:template>

  <xsl:template match="/">
    <xsl:if test="not(c:CaseExport)">
      <xsl:for-each select="*">
        <xsl:call-template name="refuse">
          <xsl:with-param name="field" select="'CaseExport'"/>
          <xsl:with-param name="problem" select="concat('the root is ', local-name(), ', not a CaseExport in urn:example:csc:case-export:1')"/>
        </xsl:call-template>
      </xsl:for-each>
    </xsl:if>
    <xsl:apply-templates select="c:CaseExport"/>
  </xsl:template>

  <xsl:template name="worker">
    <Name><xsl:value-of select="normalize-space(/c:CaseExport/c:Worker/c:Name)"/></Name>
    <Role><xsl:value-of select="normalize-space(/c:CaseExport/c:Worker/c:Title)"/></Role>
    <Organisation>Children's social care</Organisation>
  </xsl:template>

  <xsl:template match="c:CaseExport">
    <xsl:if test="not(c:Worker/c:Name) or not(c:Worker/c:Title)">
      <xsl:call-template name="refuse">
        <xsl:with-param name="field" select="'CaseExport/Worker'"/>
        <xsl:with-param name="problem" select="'a Worker with Name and Title is required'"/>
      </xsl:call-template>
    </xsl:if>
    <xsl:if test="not(c:Consent)">
      <xsl:call-template name="refuse">
        <xsl:with-param name="field" select="'CaseExport/Consent'"/>
        <xsl:with-param name="problem" select="'missing'"/>
      </xsl:call-template>
    </xsl:if>
    <InformationResponse schemaVersion="1.0">
      <Responder>
        <xsl:call-template name="worker"/>
        <xsl:if test="c:Worker/c:Phone or c:Worker/c:Email">
          <Contact>
            <xsl:if test="c:Worker/c:Phone"><Phone><xsl:value-of select="normalize-space(c:Worker/c:Phone)"/></Phone></xsl:if>
            <xsl:if test="c:Worker/c:Email"><Email><xsl:value-of select="normalize-space(c:Worker/c:Email)"/></Email></xsl:if>
          </Contact>
        </xsl:if>
      </Responder>
      <Purpose>child-safeguarding</Purpose>
      <LawfulBasis>uk-gdpr-6-1-e</LawfulBasis>
      <LawfulBasis>ca-1989-s47</LawfulBasis>
      <xsl:apply-templates select="c:Consent"/>
      <xsl:choose>
        <xsl:when test="c:Search/c:Episode">
          <RecordsFound>
            <xsl:apply-templates select="c:Search/c:Episode"/>
            <xsl:apply-templates select="c:Search/c:Risk"/>
          </RecordsFound>
        </xsl:when>
        <xsl:otherwise>
          <NoRecordsFound>
            <xsl:for-each select="c:Search/c:System"><SystemsSearched><xsl:value-of select="normalize-space(.)"/></SystemsSearched></xsl:for-each>
          </NoRecordsFound>
        </xsl:otherwise>
      </xsl:choose>
      <OriginatorCaveats>
        <xsl:if test="not(c:Sharing/c:Condition)">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'CaseExport/Sharing/Condition'"/>
            <xsl:with-param name="problem" select="'at least one release condition is required'"/>
          </xsl:call-template>
        </xsl:if>
        <xsl:apply-templates select="c:Sharing/c:Condition"/>
        <xsl:for-each select="c:Sharing/c:Note"><Caveat><xsl:value-of select="normalize-space(.)"/></Caveat></xsl:for-each>
        <OriginatorContact><xsl:call-template name="worker"/></OriginatorContact>
      </OriginatorCaveats>
    </InformationResponse>
  </xsl:template>

  <xsl:template match="c:Consent">
    <Consent>
      <xsl:choose>
        <xsl:when test="@status = 'GIVEN'"><Given/></xsl:when>
        <xsl:when test="@status = 'REFUSED'"><Refused><Reason><xsl:value-of select="c:Reason"/></Reason></Refused></xsl:when>
        <xsl:when test="@status = 'NOT_SOUGHT'"><NotSought><Reason><xsl:value-of select="c:Reason"/></Reason></NotSought></xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'CaseExport/Consent/@status'"/>
            <xsl:with-param name="problem" select="'must be GIVEN, REFUSED or NOT_SOUGHT'"/>
          </xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
      <NecessaryAndProportionate><xsl:value-of select="c:Justification"/></NecessaryAndProportionate>
      <DecidedBy><xsl:call-template name="worker"/></DecidedBy>
      <DecidedAt><xsl:value-of select="@decidedAt"/></DecidedAt>
    </Consent>
  </xsl:template>

  <xsl:template match="c:Episode">
    <Record>
      <xsl:if test="@subject"><xsl:attribute name="subject"><xsl:value-of select="@subject"/></xsl:attribute></xsl:if>
      <Source><xsl:value-of select="concat(normalize-space(/c:CaseExport/@system), ' (', @type, ')')"/></Source>
      <xsl:if test="@date"><Date><xsl:value-of select="@date"/></Date></xsl:if>
      <Summary><xsl:value-of select="normalize-space(c:Summary)"/></Summary>
    </Record>
  </xsl:template>

  <xsl:template match="c:Risk">
    <RiskIndicator>
      <xsl:attribute name="level">
        <xsl:choose>
          <xsl:when test="@level = 'HIGH'">high</xsl:when>
          <xsl:when test="@level = 'MEDIUM'">medium</xsl:when>
          <xsl:when test="@level = 'LOW'">low</xsl:when>
          <xsl:otherwise>unknown</xsl:otherwise>
        </xsl:choose>
      </xsl:attribute>
      <xsl:if test="@category">
        <xsl:attribute name="concern">
          <xsl:choose>
            <xsl:when test="@category = 'NEGLECT'">NEG</xsl:when>
            <xsl:when test="@category = 'PHYSICAL'">PHY</xsl:when>
            <xsl:when test="@category = 'SEXUAL'">SAB</xsl:when>
            <xsl:when test="@category = 'EMOTIONAL'">EMO</xsl:when>
            <xsl:when test="@category = 'DOMESTIC_ABUSE'">3A</xsl:when>
            <xsl:otherwise>
              <xsl:call-template name="refuse">
                <xsl:with-param name="field" select="'CaseExport/Search/Risk/@category'"/>
                <xsl:with-param name="problem" select="concat('unknown category ', @category)"/>
              </xsl:call-template>
            </xsl:otherwise>
          </xsl:choose>
        </xsl:attribute>
      </xsl:if>
      <xsl:if test="@subject"><xsl:attribute name="subject"><xsl:value-of select="@subject"/></xsl:attribute></xsl:if>
      <Description><xsl:value-of select="normalize-space(.)"/></Description>
    </RiskIndicator>
  </xsl:template>

  <xsl:template match="c:Condition">
    <ReleaseCondition>
      <xsl:choose>
        <xsl:when test=". = 'NO_ONWARD_DISCLOSURE'">no-onward-disclosure-without-originator-consent</xsl:when>
        <xsl:when test=". = 'HUB_ONLY'">hub-only</xsl:when>
        <xsl:when test=". = 'NOT_TO_FAMILY'">not-to-be-disclosed-to-subject-or-family</xsl:when>
        <xsl:when test=". = 'CONSULT_BEFORE_PROCEEDINGS'">consult-originator-before-use-in-proceedings</xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'CaseExport/Sharing/Condition'"/>
            <xsl:with-param name="problem" select="concat('unknown condition ', normalize-space(.))"/>
          </xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
    </ReleaseCondition>
  </xsl:template>
</xsl:stylesheet>
