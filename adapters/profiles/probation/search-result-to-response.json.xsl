<?xml version="1.0" encoding="UTF-8"?>
<!--
  Probation MASH search result (JSON, turned into <json> by
  adapters/mapping/json_xslt.py) to a canonical InformationResponse. An
  empty "records" array is a "no records found" answer. Refusals are
  "where|field|problem", where is the JSON path.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ln="urn:mash-gateway:adapter-line"
    xmlns="urn:mash-gateway:v1"
    exclude-result-prefixes="ln">
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

  <xsl:template name="officer">
    <Name><xsl:value-of select="normalize-space(/json/officer/name)"/></Name>
    <Role><xsl:value-of select="normalize-space(/json/officer/role)"/></Role>
    <Organisation>Probation Service</Organisation>
  </xsl:template>

  <xsl:template match="/json">
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="officer/name"/>
      <xsl:with-param name="field" select="'officer.name'"/>
    </xsl:call-template>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="officer/role"/>
      <xsl:with-param name="field" select="'officer.role'"/>
    </xsl:call-template>
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="consent/status"/>
      <xsl:with-param name="field" select="'consent.status'"/>
    </xsl:call-template>
    <InformationResponse schemaVersion="1.0">
      <Responder>
        <xsl:call-template name="officer"/>
        <xsl:if test="officer/phone or officer/email">
          <Contact>
            <xsl:if test="officer/phone"><Phone><xsl:value-of select="normalize-space(officer/phone)"/></Phone></xsl:if>
            <xsl:if test="officer/email"><Email><xsl:value-of select="normalize-space(officer/email)"/></Email></xsl:if>
          </Contact>
        </xsl:if>
      </Responder>
      <Purpose>child-safeguarding</Purpose>
      <LawfulBasis>uk-gdpr-6-1-e</LawfulBasis>
      <LawfulBasis>uk-gdpr-9-2-g-dpa-sch1-18</LawfulBasis>
      <xsl:apply-templates select="consent"/>
      <xsl:choose>
        <xsl:when test="records/item">
          <RecordsFound>
            <xsl:apply-templates select="records/item"/>
            <xsl:apply-templates select="risks/item"/>
          </RecordsFound>
        </xsl:when>
        <xsl:otherwise>
          <NoRecordsFound>
            <xsl:for-each select="systemsSearched/item"><SystemsSearched><xsl:value-of select="normalize-space(.)"/></SystemsSearched></xsl:for-each>
          </NoRecordsFound>
        </xsl:otherwise>
      </xsl:choose>
      <OriginatorCaveats>
        <xsl:if test="not(conditions/item)">
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'conditions'"/>
            <xsl:with-param name="problem" select="'at least one release condition is required'"/>
          </xsl:call-template>
        </xsl:if>
        <xsl:apply-templates select="conditions/item"/>
        <xsl:for-each select="caveats/item"><Caveat><xsl:value-of select="normalize-space(.)"/></Caveat></xsl:for-each>
        <OriginatorContact><xsl:call-template name="officer"/></OriginatorContact>
      </OriginatorCaveats>
    </InformationResponse>
  </xsl:template>

  <xsl:template match="consent">
    <Consent>
      <xsl:choose>
        <xsl:when test="status = 'GIVEN'"><Given/></xsl:when>
        <xsl:when test="status = 'REFUSED'"><Refused><Reason><xsl:value-of select="reason"/></Reason></Refused></xsl:when>
        <xsl:when test="status = 'NOT_SOUGHT'"><NotSought><Reason><xsl:value-of select="reason"/></Reason></NotSought></xsl:when>
        <xsl:otherwise>
          <xsl:for-each select="status">
            <xsl:call-template name="refuse">
              <xsl:with-param name="field" select="'consent.status'"/>
              <xsl:with-param name="problem" select="'must be GIVEN, REFUSED or NOT_SOUGHT'"/>
            </xsl:call-template>
          </xsl:for-each>
        </xsl:otherwise>
      </xsl:choose>
      <NecessaryAndProportionate><xsl:value-of select="justification"/></NecessaryAndProportionate>
      <DecidedBy><xsl:call-template name="officer"/></DecidedBy>
      <DecidedAt><xsl:value-of select="decidedAt"/></DecidedAt>
    </Consent>
  </xsl:template>

  <xsl:template match="records/item">
    <xsl:call-template name="required">
      <xsl:with-param name="node" select="summary"/>
      <xsl:with-param name="field" select="'summary'"/>
    </xsl:call-template>
    <Record>
      <xsl:if test="subject"><xsl:attribute name="subject"><xsl:value-of select="subject"/></xsl:attribute></xsl:if>
      <Source><xsl:value-of select="normalize-space(source)"/></Source>
      <xsl:if test="date"><Date><xsl:value-of select="date"/></Date></xsl:if>
      <Summary><xsl:value-of select="normalize-space(summary)"/></Summary>
    </Record>
  </xsl:template>

  <xsl:template match="risks/item">
    <RiskIndicator>
      <xsl:attribute name="level">
        <xsl:choose>
          <xsl:when test="level = 'VERY_HIGH' or level = 'HIGH'">high</xsl:when>
          <xsl:when test="level = 'MEDIUM'">medium</xsl:when>
          <xsl:when test="level = 'LOW'">low</xsl:when>
          <xsl:otherwise>unknown</xsl:otherwise>
        </xsl:choose>
      </xsl:attribute>
      <xsl:if test="category">
        <xsl:attribute name="concern">
          <xsl:choose>
            <xsl:when test="category = 'DOMESTIC_ABUSE'">3A</xsl:when>
            <xsl:when test="category = 'SEXUAL'">SAB</xsl:when>
            <xsl:when test="category = 'PHYSICAL'">PHY</xsl:when>
            <xsl:when test="category = 'CCE'">24A</xsl:when>
            <xsl:otherwise>
              <xsl:for-each select="category">
                <xsl:call-template name="refuse">
                  <xsl:with-param name="field" select="'category'"/>
                  <xsl:with-param name="problem" select="concat('unknown category ', .)"/>
                </xsl:call-template>
              </xsl:for-each>
            </xsl:otherwise>
          </xsl:choose>
        </xsl:attribute>
      </xsl:if>
      <xsl:if test="subject"><xsl:attribute name="subject"><xsl:value-of select="subject"/></xsl:attribute></xsl:if>
      <Description><xsl:value-of select="normalize-space(description)"/></Description>
    </RiskIndicator>
  </xsl:template>

  <xsl:template match="conditions/item">
    <ReleaseCondition>
      <xsl:choose>
        <xsl:when test=". = 'NO_ONWARD_DISCLOSURE'">no-onward-disclosure-without-originator-consent</xsl:when>
        <xsl:when test=". = 'HUB_ONLY'">hub-only</xsl:when>
        <xsl:when test=". = 'NOT_TO_FAMILY'">not-to-be-disclosed-to-subject-or-family</xsl:when>
        <xsl:when test=". = 'CONSULT_BEFORE_PROCEEDINGS'">consult-originator-before-use-in-proceedings</xsl:when>
        <xsl:otherwise>
          <xsl:call-template name="refuse">
            <xsl:with-param name="field" select="'conditions'"/>
            <xsl:with-param name="problem" select="concat('unknown condition ', normalize-space(.))"/>
          </xsl:call-template>
        </xsl:otherwise>
      </xsl:choose>
    </ReleaseCondition>
  </xsl:template>
</xsl:stylesheet>
