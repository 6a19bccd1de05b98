"""The plain-text mail forms: ``Field: value`` lines for a Referral or an InformationResponse.

Pure: the text and the facts the intake knows (when the mail arrived, which
agency sent it) in, canonical XML out, or a FormError naming the field. The
templates (README "Secure e-mail intake") come from FIELDS below.

Format: one ``Field: value`` per line, field names case-insensitive; a line
starting with a space or tab continues the previous value (for long
narratives); blank lines and lines starting with ``#`` are ignored, and a
field left empty or holding only the template's ``# hint`` is not filled in. Fields
marked repeatable may appear more than once; any other field appears once.
Each value is checked here, so the sender is told which field is wrong; the
finished document is schema-checked again by the caller.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from gateway.core import vocabulary, xmlsafe
from gateway.core.identifiers import nhs_number_problem

NS = "urn:mash-gateway:v1"
FIELD_LINE = re.compile(r"([A-Za-z][A-Za-z-]*)\s*:\s?(.*)")
LOCAL_CONCERN = re.compile(r"LOCAL-[A-Z0-9-]{1,34}")
REFERRAL_SOURCE = re.compile(r"1[A-D]|2[AB]|3[A-F]|4|5[A-D]|6|7|8|9|10")
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}")  # common.xsd CorrelationId
PHONE = re.compile(r"\+?[0-9][0-9 ]{5,19}")
CONSENT = ("given", "refused", "not-sought")
RELEASE_CONDITIONS = (
    "no-onward-disclosure-without-originator-consent",
    "hub-only",
    "not-to-be-disclosed-to-subject-or-family",
    "consult-originator-before-use-in-proceedings",
    "may-be-shared-with-named-agencies",
)
SEXES = ("female", "male", "indeterminate", "not-known")


class FormError(ValueError):
    """A form field is missing, repeated, unknown or invalid; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"form field {field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Field:
    name: str
    required: bool
    repeatable: bool
    hint: str


REFERRAL_FIELDS = (
    Field("Referrer-Source", True, False, "CIN census source code, e.g. 6 (police), 3A (GP)"),
    Field("Referrer-Name", True, False, "your name"),
    Field("Referrer-Role", True, False, "your role"),
    Field("Referrer-Phone", False, False, "a phone number to reach you"),
    Field("Subject-Given", True, False, "the child's or adult's given name"),
    Field("Subject-Family", True, False, "family name"),
    Field("Subject-Date-Of-Birth", True, False, "YYYY-MM-DD"),
    Field("Subject-Sex", False, False, "female, male, indeterminate or not-known"),
    Field("Subject-NHS-Number", False, False, "10 digits, if known"),
    Field("Concern", True, True, "a concern code, e.g. 3A; one line per concern"),
    Field("Consent", True, False, "given, refused or not-sought"),
    Field("Consent-Reason", False, False, "why, when consent is refused or not sought"),
    Field("Necessary-And-Proportionate", True, False, "why sharing is necessary"),
    Field("Purpose", True, False, "e.g. child-safeguarding"),
    Field("Lawful-Basis", True, True, "e.g. uk-gdpr-6-1-e; one line per basis"),
    Field("Rag", False, False, "Red, Amber or Green"),
    Field("Narrative", True, False, "what happened; indent continuation lines"),
)

RESPONSE_FIELDS = (
    Field("Request-Id", True, False, "the message id of the information request"),
    Field("Case-Id", False, False, "the case id the request gave, if any"),
    Field("Responder-Name", True, False, "your name"),
    Field("Responder-Role", True, False, "your role"),
    Field("Responder-Phone", False, False, "a phone number to reach you"),
    Field("Purpose", True, False, "the purpose the request stated"),
    Field("Lawful-Basis", True, True, "e.g. uk-gdpr-6-1-e; one line per basis"),
    Field("Consent", True, False, "given, refused or not-sought"),
    Field("Consent-Reason", False, False, "why, when consent is refused or not sought"),
    Field("Necessary-And-Proportionate", True, False, "why sharing is necessary"),
    Field("Record", False, True, "SOURCE | YYYY-MM-DD or blank | SUMMARY; one line per record"),
    Field("Systems-Searched", False, True, "when nothing was found: each system searched"),
    Field("Release-Condition", True, True, "e.g. no-onward-disclosure-without-originator-consent"),
    Field("Caveat", False, True, "anything the hub must know before using this"),
)

FORMS = {"Referral": REFERRAL_FIELDS, "InformationResponse": RESPONSE_FIELDS}


@dataclass(frozen=True)
class FilledForm:
    xml: bytes
    message_type: str
    in_reply_to: str | None = None
    correlation_id: str | None = None


def is_form(text: str) -> bool:
    """A form starts (after blank lines) with a ``Form:`` line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.lower().startswith("form:")


def template(message_type: str) -> str:
    """The blank form, as the README shows it."""
    lines = [f"Form: {message_type}"]
    for field in FORMS[message_type]:
        flags = ("required" if field.required else "optional") + (
            ", repeatable" if field.repeatable else ""
        )
        lines.append(f"{field.name}:    # {field.hint} ({flags})")
    return "\n".join(lines) + "\n"


def fill_in(form: str, answers: Mapping[str, str]) -> str:
    """``form`` (a template, perhaps pre-filled) with each named field's hint replaced by its
    answer: what a sender does by hand. Fields without an answer keep their line."""
    lines = []
    for line in form.splitlines():
        name = line.split(":", 1)[0]
        lines.append(f"{name}: {answers[name]}" if ":" in line and name in answers else line)
    return "\n".join(lines) + "\n"


def parse_lines(text: str) -> list[tuple[str, str, int]]:
    """(field name as written, value, line number); continuation lines join with a newline."""
    found: list[tuple[str, str, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if not found:
                raise FormError(f"line {number}", "a continuation line before any field")
            name, value, start = found[-1]
            found[-1] = (name, f"{value}\n{line.strip()}".strip(), start)
            continue
        match = FIELD_LINE.fullmatch(line.rstrip())
        if match is None:
            raise FormError(f"line {number}", "is not a 'Field: value' line")
        found.append((match[1], match[2].strip(), number))
    return found


def fill(text: str, received_at: datetime, agency: str) -> FilledForm:
    """The canonical XML for a filled-in form, or FormError naming the first bad field."""
    lines = parse_lines(text)
    if not lines or lines[0][0].lower() != "form":
        raise FormError(
            "Form", "the first line must be 'Form: Referral' or 'Form: InformationResponse'"
        )
    kind = lines[0][1]
    if kind not in FORMS:
        raise FormError("Form", f"{kind!r} is not a form (Referral or InformationResponse)")
    values = _collect(lines[1:], FORMS[kind])
    if kind == "Referral":
        return FilledForm(_referral(values, received_at, agency), kind)
    request_id = _uuid(values, "Request-Id")
    case_id = _checked(values, "Case-Id", _is_case_id, "the case id the request gave")
    return FilledForm(_response(values, received_at, agency), kind, request_id, case_id)


Values = dict[str, list[str]]


def _collect(lines: list[tuple[str, str, int]], fields: tuple[Field, ...]) -> Values:
    by_name = {f.name.lower(): f for f in fields}
    values: Values = {}
    for name, value, number in lines:
        field = by_name.get(name.lower())
        if field is None:
            raise FormError(name, f"unknown field on line {number}")
        if not value or value.startswith("#"):
            continue  # left blank, or as the template's hint: not filled in
        if field.name in values and not field.repeatable:
            raise FormError(field.name, f"given twice (again on line {number})")
        problem = xmlsafe.text_problem(value)
        if problem is not None:
            raise FormError(field.name, f"on line {number} {problem}")
        values.setdefault(field.name, []).append(value)
    for field in fields:
        if field.required and field.name not in values:
            raise FormError(field.name, f"is required ({field.hint})")
    return values


def _one(values: Values, name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _checked(values: Values, name: str, ok: Callable[[str], bool], expected: str) -> str | None:
    value = _one(values, name)
    if value is not None and not ok(value):
        raise FormError(name, f"must be {expected}")
    return value


def _choice(values: Values, name: str, allowed: tuple[str, ...] | frozenset[str]) -> str | None:
    return _checked(values, name, lambda v: v in allowed, "one of " + ", ".join(sorted(allowed)))


def _date(values: Values, name: str) -> str | None:
    return _checked(values, name, _is_date, "a date written YYYY-MM-DD")


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_concern(code: str) -> bool:
    known = vocabulary.enumeration("CinAbuseCategory") | vocabulary.enumeration("CinFactorCode")
    return code in known or LOCAL_CONCERN.fullmatch(code) is not None


def _uuid(values: Values, name: str) -> str:
    value = _one(values, name) or ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise FormError(name, "must be the message id (a UUID) the request carried") from None


def _short(values: Values, name: str) -> str | None:
    return _checked(values, name, lambda v: len(v) <= 200, "at most 200 characters")


def _each(values: Values, name: str, ok: Callable[[str], bool], expected: str) -> list[str]:
    for value in values.get(name, []):
        if not ok(value):
            raise FormError(name, expected)
    return values.get(name, [])


def _is_phone(value: str) -> bool:
    return PHONE.fullmatch(value) is not None


def _is_case_id(value: str) -> bool:
    return CASE_ID.fullmatch(value) is not None


def _is_source(value: str) -> bool:
    return REFERRAL_SOURCE.fullmatch(value) is not None


def _root(name: str) -> etree._Element:
    nsmap: dict[str | None, str] = {None: NS}
    root = etree.Element(f"{{{NS}}}{name}", nsmap=nsmap)  # type: ignore[arg-type]
    root.set("schemaVersion", "1.0")
    return root


def _add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _instant(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _staff(parent: etree._Element, tag: str, values: Values, prefix: str, agency: str) -> None:
    staff = _add(parent, tag)
    _add(staff, "Name", _short(values, f"{prefix}-Name"))
    _add(staff, "Role", _short(values, f"{prefix}-Role"))
    _add(staff, "Agency", agency)
    phone = _checked(values, f"{prefix}-Phone", _is_phone, "a phone number (digits, spaces)")
    if phone is not None:
        _add(_add(staff, "Contact"), "Phone", phone)


def _consent(root: etree._Element, values: Values, prefix: str, agency: str, at: datetime) -> None:
    consent = _add(root, "Consent")
    kind = _choice(values, "Consent", CONSENT)
    reason = _one(values, "Consent-Reason")
    if kind == "given":
        _add(consent, "Given")
    else:
        if reason is None:
            raise FormError("Consent-Reason", f"is required when consent is {kind}")
        _add(_add(consent, "Refused" if kind == "refused" else "NotSought"), "Reason", reason)
    _add(consent, "NecessaryAndProportionate", _one(values, "Necessary-And-Proportionate"))
    _staff(consent, "DecidedBy", values, prefix, agency)
    _add(consent, "DecidedAt", _instant(at))


def _purpose_and_bases(root: etree._Element, values: Values) -> None:
    purposes = vocabulary.purposes() - {vocabulary.SYSTEM_PURPOSE}
    _add(root, "Purpose", _choice(values, "Purpose", purposes))
    bases = vocabulary.lawful_bases()
    for basis in _each(values, "Lawful-Basis", bases.__contains__, "is not a known lawful basis"):
        _add(root, "LawfulBasis", basis)


def _referral(values: Values, received_at: datetime, agency: str) -> bytes:
    root = _root("Referral")
    _add(root, "ContactReceivedAt", _instant(received_at))
    referrer = _add(root, "Referrer")
    _add(
        referrer,
        "Source",
        _checked(
            values,
            "Referrer-Source",
            _is_source,
            "a CIN census referral source code, e.g. 6 or 3A",
        ),
    )
    _add(referrer, "Name", _short(values, "Referrer-Name"))
    _add(referrer, "Role", _short(values, "Referrer-Role"))
    _add(referrer, "Agency", agency)
    phone = _checked(values, "Referrer-Phone", _is_phone, "a phone number (digits, spaces)")
    if phone is not None:
        _add(_add(referrer, "Contact"), "Phone", phone)
    subject = _add(_add(root, "Subjects"), "Subject")
    subject.set("ref", "s1")
    name = _add(subject, "Name")
    _add(name, "Given", _short(values, "Subject-Given"))
    _add(name, "Family", _short(values, "Subject-Family"))
    _add(subject, "DateOfBirth", _date(values, "Subject-Date-Of-Birth"))
    sex = _choice(values, "Subject-Sex", SEXES)
    if sex is not None:
        _add(subject, "Sex", sex)
    nhs = _checked(
        values,
        "Subject-NHS-Number",
        lambda v: nhs_number_problem(v) is None,
        "a valid NHS number (10 digits, check digit)",
    )
    if nhs is not None:
        _add(subject, "Identifier", nhs).set("scheme", "nhs-number")
    concerns = _add(root, "Concerns")
    for code in _each(values, "Concern", _is_concern, "must be a CIN concern code, e.g. 3A or NEG"):
        _add(concerns, "Concern").set("code", code)
    _consent(root, values, "Referrer", agency, received_at)
    _purpose_and_bases(root, values)
    rag = _choice(values, "Rag", vocabulary.rag_ratings())
    if rag is not None:
        _add(root, "Rag", rag)
    _add(root, "Narrative", _one(values, "Narrative"))
    return _serialise(root)


def _response(values: Values, received_at: datetime, agency: str) -> bytes:
    root = _root("InformationResponse")
    _staff(root, "Responder", values, "Responder", agency)
    _purpose_and_bases(root, values)
    _consent(root, values, "Responder", agency, received_at)
    records = values.get("Record", [])
    searched = values.get("Systems-Searched", [])
    if bool(records) == bool(searched):
        raise FormError("Record", "give Record lines, or Systems-Searched lines when none found")
    if records:
        found = _add(root, "RecordsFound")
        for line in records:
            source, when, summary = _record(line)
            record = _add(found, "Record")
            _add(record, "Source", source)
            if when:
                _add(record, "Date", when)
            _add(record, "Summary", summary)
    else:
        none = _add(root, "NoRecordsFound")
        for system in searched:
            _add(none, "SystemsSearched", system)
    caveats = _add(root, "OriginatorCaveats")
    conditions = _each(
        values,
        "Release-Condition",
        RELEASE_CONDITIONS.__contains__,
        "must be one of " + ", ".join(RELEASE_CONDITIONS),
    )
    for condition in conditions:
        _add(caveats, "ReleaseCondition", condition)
    for caveat in values.get("Caveat", []):
        _add(caveats, "Caveat", caveat)
    _staff(caveats, "OriginatorContact", values, "Responder", agency)
    return _serialise(root)


def _record(line: str) -> tuple[str, str, str]:
    pieces = [p.strip() for p in line.split("|")]
    if len(pieces) != 3 or not pieces[0] or not pieces[2]:
        raise FormError("Record", "must be 'SOURCE | YYYY-MM-DD or blank | SUMMARY'")
    if pieces[1] and not _is_date(pieces[1]):
        raise FormError("Record", "the date must be written YYYY-MM-DD (or left blank)")
    return pieces[0], pieces[1], pieces[2]


def _serialise(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
