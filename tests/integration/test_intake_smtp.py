"""The secure-mail intake over real sockets: real SMTP clients, real gpg keys, the real exchange.

Every refused case asserts the reply code, the enhanced status and reason,
and that nothing reached the exchange (the router recorded no new message
and the hub's inbox got nothing). Every accepted case asserts the message
reached the hub's edge with the assurance the mail earned, that the hub's
receipt came back to the sending agency, and that the sender was mailed an
acknowledgement. One exchange and intake serve the whole module (setting
them up is most of the cost); the checks compare against a baseline taken
at the start of each test.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default

import aio_pika
import pytest
import pytest_asyncio
import structlog
from structlog.testing import capture_logs

from gateway.broker import topology
from gateway.broker.publisher import publish
from gateway.broker.vhost import BrokerAdmin
from gateway.core import notices, schemas
from gateway.core.attachments import manifest
from gateway.core.deadline_rules import Kind
from gateway.core.deadlines import EscalationContact
from gateway.core.envelope import HeaderFields, recipient_keys, seal_bytes
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.demo.flow import discharge_letter
from gateway.demo.mail import MailServer, mail_server
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.intake import forms
from gateway.intake.service import RunningIntake
from gateway.services.edge import Delivered, Submission
from gateway.services.metrics import REGISTRY
from tests.integration import tls_scan
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.intake_harness import (
    EDUCATION,
    HOST,
    HOUSING_OFFICER,
    HUB,
    NURSE,
    OFFICER,
    PROBATION_OFFICER,
    PROBATION_SERVER,
    TLS_DOMAIN,
    People,
    client_tls,
    content_with_xml,
    encrypted,
    housing_pki,
    intake_on,
    made_people,
    mail,
    router_message_count,
    send,
    send_raw_data,
    signed,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

UPN = b'<Identifier scheme="upn">B801200005001</Identifier>'
# The school's example referral; police and health may not pass on the child's UPN.
REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes().replace(UPN, b"")
DECISION = (schemas_dir() / "examples" / "valid" / "decision.xml").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


def response_form(request_id: str, extra: str = "") -> bytes:
    form = (
        "Form: InformationResponse\r\n"
        f"Request-Id: {request_id}\r\n{extra}"
        "Responder-Name: Chris Doe\r\nResponder-Role: Named nurse\r\n"
        "Purpose: child-safeguarding\r\nLawful-Basis: uk-gdpr-9-2-h-dpa-sch1-2\r\n"
        "Consent: given\r\nNecessary-And-Proportionate: Only what was asked.\r\n"
        "Systems-Searched: Maternity system\r\n"
        "Release-Condition: hub-only\r\n"
    )
    return ("Content-Type: text/plain; charset=us-ascii\r\n\r\n" + form).encode()


@pytest.fixture(scope="session")
def people() -> Iterator[People]:
    with made_people() as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    async with running_exchange(
        broker_admin, AMQP_URL, tmp_path_factory.mktemp("intake")
    ) as running:
        await running.edge("hub", takes_attachments=True)
        await running.edge("police")
        await running.edge("health")
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(exchange: Exchange) -> AsyncIterator[MailServer]:
    assert exchange.config.intake is not None
    async with mail_server(exchange.config.intake.tls_cert, exchange.config.intake.tls_key) as sink:
        yield sink


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def intake(
    exchange: Exchange, people: People, relay: MailServer
) -> AsyncIterator[tuple[RunningIntake, str]]:
    async with intake_on(exchange, people, relay.port) as running:
        yield running


def pgp_mail(
    people: People, gateway: str, signer: str = OFFICER, from_address: str = OFFICER
) -> bytes:
    person = next(p for p in (*people.known_to_gateway(), people.unknown) if p.address == signer)
    return mail(
        from_address, encrypted(signed(content_with_xml(REFERRAL), people, person), people, gateway)
    )


_baseline: dict[str, int] = {}


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def baseline(exchange: Exchange) -> None:
    """What the router and the hub had when the test started, once an earlier test's
    trailing traffic (receipts) has settled."""
    await settle(exchange)


async def settle(exchange: Exchange) -> None:
    """Take the baseline again once the traffic so far has settled."""
    settled = (-1, -1)
    for _ in range(50):
        now = (router_message_count(exchange), len(exchange.inboxes["hub"].messages))
        if now == settled:
            break
        settled = now
        await asyncio.sleep(0.3)
    _baseline["router"], _baseline["hub"] = settled


async def nothing_reached_the_exchange(exchange: Exchange) -> None:
    await asyncio.sleep(0.5)  # anything published would have been routed by now
    assert router_message_count(exchange) == _baseline["router"]
    assert len(exchange.inboxes["hub"].messages) == _baseline["hub"]


def intake_results(result: str, reason: str) -> float:
    labels = {"result": result, "reason": reason}
    return REGISTRY.get_sample_value("mash_gateway_intake_results_total", labels) or 0.0


def delivered_to_hub(exchange: Exchange, message_id: str) -> list[Delivered]:
    return [m for m in exchange.inboxes["hub"].messages if m.header.fields.message_id == message_id]


def acknowledgements(relay: MailServer, address: str) -> list[bytes]:
    """What the relay was given for ``address``, sent by the intake."""
    return [
        raw
        for sender, to, raw in relay.mails
        if sender == f"mash-intake@{HOST}" and to == [address]
    ]


async def refused_with(
    exchange: Exchange, reply: tuple[int, str], code: int, status: str, words: str
) -> None:
    assert reply[0] == code, reply
    assert reply[1].startswith(status), reply
    assert words in reply[1], reply
    await nothing_reached_the_exchange(exchange)


async def test_signed_and_encrypted_mail_is_delivered_receipted_and_acknowledged(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People, relay: MailServer
) -> None:
    running, gateway = intake
    code, reply = await asyncio.to_thread(
        send, running.port, OFFICER, HUB, pgp_mail(people, gateway)
    )
    assert code == 250, reply
    assert reply.startswith("2.0.0 Accepted as Referral") and "(pgp-verified)" in reply
    message_id = reply.split()[4]

    async def delivered_and_receipted() -> bool:
        receipts = exchange.inboxes["police"].of_type("DeliveryReceipt")
        return bool(delivered_to_hub(exchange, message_id)) and any(
            r.header.fields.in_reply_to == message_id for r in receipts
        )

    await eventually(delivered_and_receipted)
    delivered = delivered_to_hub(exchange, message_id)[0]
    assert delivered.header.fields.sender == "police"
    assert delivered.header.fields.assurance == "pgp-verified"
    assert delivered.payload == REFERRAL
    # Signed with the intake's own key for police, not police's edge key.
    assert exchange.config.registry.keys[delivered.header.signing_key_id].intake

    async def acknowledged() -> bool:
        return bool(acknowledgements(relay, OFFICER))

    await eventually(acknowledged)
    # Encrypted to the officer's pinned key: the id is only in the (encrypted) body.
    raw = acknowledgements(relay, OFFICER)[-1]
    plaintext = people.gpg.decrypt(raw.split(b"application/octet-stream", 1)[1]).data
    assert f"Message id: {message_id}".encode() in plaintext
    assert b"multipart/encrypted" in raw and f"Message id: {message_id}".encode() not in raw


async def forged_with_intake_key(exchange: Exchange) -> HeaderFields:
    """What a thief of the intake's key for police could try: a message as police's edge
    would send it (assurance edge-signed), signed with that key, published to ingress."""
    now = utc_now()
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        message_type="Referral",
        sender="police",
        recipients=("hub",),
        created_at=now,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18"),
    )
    config = exchange.config
    signer = keystore.load_signing_keys(config, "police", now, intake=True).signer(
        config.registry, now
    )
    assert config.registry.keys[signer.key_id].intake
    sealed = seal_bytes(fields, REFERRAL, signer, recipient_keys(config.registry, ("hub",), now))
    await publish(
        exchange.edges["police"].ingress,
        sealed,
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
    )
    return fields


async def mail_claimed_by_police_edge(exchange: Exchange) -> HeaderFields:
    """Police's own edge claiming a mail-borne assurance for what it sends."""
    return await exchange.edges["police"].submit(
        Submission(REFERRAL, ("hub",), assurance="pgp-verified")
    )


@pytest.mark.parametrize(
    ("send_out_of_scope", "words"),
    [
        (forged_with_intake_key, "intake key used outside mail scope"),
        (mail_claimed_by_police_edge, "edge key used for mail"),
    ],
)
async def test_a_key_used_outside_its_scope_is_refused_by_the_router_and_mail_still_routes(
    exchange: Exchange,
    intake: tuple[RunningIntake, str],
    people: People,
    send_out_of_scope: Callable[[Exchange], Awaitable[HeaderFields]],
    words: str,
) -> None:
    fields = await send_out_of_scope(exchange)

    def refusals() -> list[notices.NonDeliveryFacts]:
        return [
            facts
            for m in exchange.inboxes["police"].of_type("NonDelivery")
            if (facts := notices.non_delivery_facts(m.payload)).failed_message_id
            == fields.message_id
        ]

    async def told() -> bool:
        return bool(refusals())

    await eventually(told)
    (refused,) = refusals()
    assert refused.check == "key-scope" and words in refused.reason
    assert not delivered_to_hub(exchange, fields.message_id)
    # The intake's own mail, signed with the same intake key, still routes.
    running, gateway = intake
    code, reply = await asyncio.to_thread(
        send, running.port, OFFICER, HUB, pgp_mail(people, gateway)
    )
    assert code == 250, reply

    async def delivered() -> bool:
        return bool(delivered_to_hub(exchange, reply.split()[4]))

    await eventually(delivered)


async def test_tls_domain_mail_is_delivered_at_lower_assurance_and_acknowledged(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer
) -> None:
    running, _ = intake
    code, reply = await asyncio.to_thread(
        send, running.port, NURSE, HUB, mail(NURSE, content_with_xml(REFERRAL))
    )
    assert code == 250 and "(tls-only)" in reply, reply
    message_id = reply.split()[4]

    async def delivered() -> bool:
        return bool(delivered_to_hub(exchange, message_id))

    await eventually(delivered)
    fields = delivered_to_hub(exchange, message_id)[0].header.fields
    assert (fields.sender, fields.assurance) == ("health", "tls-only")

    async def acknowledged() -> bool:
        return any(message_id.encode() in raw for raw in acknowledgements(relay, NURSE))

    await eventually(acknowledged)


async def test_a_form_answer_becomes_a_response_to_the_request(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    request = await exchange.edges["hub"].submit(Submission(REQUEST, ("health",)))

    async def requested() -> bool:
        return bool(exchange.inboxes["health"].of_type("InformationRequest"))

    await eventually(requested)
    form = response_form(request.message_id, f"Case-Id: {request.correlation_id}\r\n")
    data = mail(NURSE, form, subject="Re: information request")
    code, reply = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
    assert code == 250 and "Accepted as InformationResponse" in reply, reply

    message_id = reply.split()[4]

    async def answered() -> bool:
        return bool(delivered_to_hub(exchange, message_id))

    await eventually(answered)
    fields = delivered_to_hub(exchange, message_id)[0].header.fields
    assert (fields.in_reply_to, fields.correlation_id) == (
        request.message_id,
        request.correlation_id,
    )
    assert fields.assurance == "tls-only"


async def test_a_form_with_an_invalid_field_is_refused_naming_it(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    data = mail(NURSE, response_form("6f1c2b1e-8f0a-4c47-9d55-6c1f0b7d2a10", "Rag: Red\r\n"))
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
    await refused_with(exchange, reply, 550, "5.6.0", "Form field Rag: unknown field")


@contextmanager
def every_log_event() -> Iterator[list[structlog.typing.EventDict]]:
    """Every structlog event, debug up, whatever level an earlier `init` left configured."""
    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as events:
            yield events
    finally:
        structlog.configure(wrapper_class=previous)


async def test_free_text_with_an_attachment_reaches_the_hub_as_a_referral_for_triage(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    text = "Jamie came to clinic with a bruise nobody would explain.\nPlease call me."
    scan = b"%PDF-1.4 body map of the bruise\x00\xff"
    entity = EmailMessage(policy=SMTP)
    entity.set_content(text)
    entity.add_attachment(scan, maintype="application", subtype="pdf", filename="body-map.pdf")
    data = mail(NURSE, entity.as_bytes(), subject="Worried about a child")
    with every_log_event() as logs:
        code, reply = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
        assert code == 250, reply
        assert reply.startswith("2.0.0 Accepted as Referral") and "(tls-only)" in reply
        message_id = reply.split()[4]

        async def delivered_and_receipted() -> bool:
            receipts = exchange.inboxes["health"].of_type("DeliveryReceipt")
            return bool(delivered_to_hub(exchange, message_id)) and any(
                r.header.fields.in_reply_to == message_id for r in receipts
            )

        await eventually(delivered_and_receipted)
    delivered = delivered_to_hub(exchange, message_id)[0]
    assert (delivered.header.fields.sender, delivered.header.fields.assurance) == (
        "health",
        "tls-only",
    )
    assert delivered.header.fields.purpose == "child-safeguarding"
    # A Referral like any other: the hub owes a decision on it.
    owed = await exchange.router_store.case_deadlines(delivered.header.fields.correlation_id)
    assert [(d.kind, d.debtor) for d in owed if d.kind is Kind.DECISION] == [(Kind.DECISION, "hub")]
    root = schemas.validate(delivered.payload, "delivered", "Referral")
    ns = {"m": schemas.NAMESPACE}
    assert root.findtext("m:ManualTriage/m:From", namespaces=ns) == NURSE
    assert root.findtext("m:ManualTriage/m:Text", namespaces=ns) == text
    # The scan is a real attachment of the message, not bytes in the XML.
    assert scan not in delivered.payload
    assert [(a.facts.file_name, a.facts.sha256) for a in delivered.attachments] == [
        ("body-map.pdf", hashlib.sha256(scan).hexdigest())
    ]
    assert exchange.inboxes["hub"].files[message_id] == [scan]
    # The logs saw the acceptance, and never the sender's words.
    assert any(e.get("message_id") == message_id for e in logs), logs
    assert not [e for e in logs if "bruise" in repr(e) or "Jamie" in repr(e)]


async def test_free_text_signed_and_encrypted_from_a_pgp_domain_is_triaged_too(
    exchange: Exchange, people: People, intake: tuple[RunningIntake, str]
) -> None:
    """The signed part carries no From header: the checked outer From is the reply address."""
    running, gateway = intake
    officer = next(p for p in people.known_to_gateway() if p.address == OFFICER)
    note = EmailMessage(policy=SMTP)
    note.set_content("Concern raised at a domestic call-out; details by phone.")
    data = mail(OFFICER, encrypted(signed(note.as_bytes(), people, officer), people, gateway))
    code, reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
    assert code == 250 and "(pgp-verified)" in reply, reply
    message_id = reply.split()[4]
    await eventually(lambda: _async_true(delivered_to_hub(exchange, message_id)))
    root = schemas.validate(delivered_to_hub(exchange, message_id)[0].payload, "mail", "Referral")
    assert root.findtext("m:ManualTriage/m:From", namespaces={"m": schemas.NAMESPACE}) == OFFICER


async def test_a_signed_mail_s_pdf_reaches_the_hub_byte_identical_as_an_attachment(
    exchange: Exchange, people: People, intake: tuple[RunningIntake, str]
) -> None:
    """A gpg-signed, encrypted mail from police: a Referral document, a PDF (with a name a
    file system must not take as it stands), and a free-text one with a PDF for triage."""
    running, gateway = intake
    officer = next(p for p in people.known_to_gateway() if p.address == OFFICER)
    letter = discharge_letter(exchange.tmp / "mail-files").read_bytes()
    with_document = EmailMessage(policy=SMTP)
    with_document.set_content("Referral and the discharge letter attached.")
    unnamed = REFERRAL[: REFERRAL.index(b"  <Attachments>")] + b"</Referral>\n"
    with_document.add_attachment(
        unnamed, maintype="application", subtype="xml", filename="referral.xml"
    )
    with_document.add_attachment(
        letter, maintype="application", subtype="pdf", filename="../letters/discharge..pdf"
    )
    for_triage = EmailMessage(policy=SMTP)
    for_triage.set_content("Concern raised at a domestic call-out; the letter is attached.")
    for_triage.add_attachment(
        letter, maintype="application", subtype="pdf", filename="discharge-letter.pdf"
    )
    for entity, carried, name in (
        (with_document, "Referrer", "discharge.pdf"),
        (for_triage, "ManualTriage", "discharge-letter.pdf"),
    ):
        data = mail(OFFICER, encrypted(signed(entity.as_bytes(), people, officer), people, gateway))
        code, reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
        assert code == 250 and "(pgp-verified)" in reply, reply
        message_id = reply.split()[4]
        await eventually(functools.partial(_async_true_of, exchange, message_id))
        delivered = delivered_to_hub(exchange, message_id)[0]
        root = schemas.validate(delivered.payload, "mail", "Referral")
        assert root.find(f"m:{carried}", namespaces={"m": schemas.NAMESPACE}) is not None
        [named] = manifest(root)
        assert (named.file_name, named.media_type, named.size, named.sha256) == (
            name,
            "application/pdf",
            len(letter),
            hashlib.sha256(letter).hexdigest(),
        )
        assert exchange.inboxes["hub"].files[message_id] == [letter]


async def _async_true_of(exchange: Exchange, message_id: str) -> bool:
    return bool(delivered_to_hub(exchange, message_id))


async def _async_true(value: object) -> bool:
    return bool(value)


async def test_a_mail_the_router_refuses_after_acceptance_gets_a_non_delivery_mail(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer
) -> None:
    """No sharing agreement lets probation refer to education: accepted, then refused."""
    running, _ = intake
    data = mail(PROBATION_OFFICER, content_with_xml(REFERRAL), to=EDUCATION)
    code, reply = await asyncio.to_thread(send, running.port, PROBATION_OFFICER, EDUCATION, data)
    assert code == 250 and "Accepted as Referral" in reply, reply
    message_id = reply.split()[4]

    def bounces() -> list[bytes]:
        return [
            raw for raw in acknowledgements(relay, PROBATION_OFFICER) if b"Not delivered" in raw
        ]

    async def bounced() -> bool:
        return bool(bounces())

    await eventually(bounced)
    assert f"Message id: {message_id}".encode() in bounces()[0]
    assert b"Failed check: policy" in bounces()[0]
    assert b"no agreement lets probation send Referral to education" in bounces()[0]


async def test_a_document_without_purpose_or_lawful_basis_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    data = mail(NURSE, content_with_xml(DECISION), subject="Decision")
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
    await refused_with(exchange, reply, 550, "5.6.0", "state a purpose and at least one lawful")


def _fill_in(mailed: bytes) -> tuple[str, bytes]:
    """The Reply-To of a mailed request, and a reply with its pre-filled form completed."""
    message = BytesParser(policy=default).parsebytes(mailed)
    assert isinstance(message, EmailMessage)
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    form = text.get_content()[text.get_content().index("Form: InformationResponse") :]
    answers = {
        "Responder-Name": "Jo Bloggs",
        "Responder-Role": "Probation officer",
        "Purpose": "child-safeguarding",
        "Lawful-Basis": "uk-gdpr-6-1-e",
        "Consent": "not-sought",
        "Consent-Reason": "Seeking consent would prejudice the enquiry.",
        "Necessary-And-Proportionate": "Only what the request asks.",
        "Systems-Searched": "nDelius",
        "Release-Condition": "hub-only",
    }
    body = forms.fill_in(form, answers).replace("\n", "\r\n")
    entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.encode()
    return str(message["Reply-To"]), entity


async def test_an_emailed_request_is_answered_through_its_reply_address(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer
) -> None:
    """The e-mail-only agency round trip: request out by mail, answer in by mail, correlated."""
    running, _ = intake
    request = await exchange.edges["hub"].submit(Submission(REQUEST, ("probation",)))
    contact = "pdu@probation.demo.example"

    def mailed() -> list[bytes]:
        return [
            raw for raw in acknowledgements(relay, contact) if request.message_id.encode() in raw
        ]

    async def requested() -> bool:
        return bool(mailed())

    await eventually(requested)
    raw = mailed()[0]
    assert b'filename="request.xml"' in raw
    reply_to, answer = _fill_in(raw)
    assert reply_to.startswith("reply+") and reply_to.endswith(f"@{HOST}")

    # The reply address is only good for the agency the request went to.
    stolen = await asyncio.to_thread(send, running.port, NURSE, reply_to, mail(NURSE, answer))
    assert stolen[0] == 550 and stolen[1].startswith("5.1.1 This reply address"), stolen
    local, domain = reply_to.split("@")
    forged = f"{local[:-1]}{'b' if local.endswith('a') else 'a'}@{domain}"  # the tag altered
    assert (await asyncio.to_thread(send, running.port, PROBATION_OFFICER, forged, b""))[0] == 550

    data = mail(PROBATION_OFFICER, answer, to=reply_to, subject="Re: information request")
    code, reply = await asyncio.to_thread(send, running.port, PROBATION_OFFICER, reply_to, data)
    assert code == 250 and "Accepted as InformationResponse" in reply, reply
    message_id = reply.split()[4]

    async def answered() -> bool:
        record = await exchange.router_store.message(request.message_id)
        return bool(delivered_to_hub(exchange, message_id)) and (
            record is not None and record.state is State.ANSWERED
        )

    await eventually(answered)
    fields = delivered_to_hub(exchange, message_id)[0].header.fields
    assert (fields.sender, fields.in_reply_to, fields.correlation_id) == (
        "probation",
        request.message_id,
        request.correlation_id,
    )


async def test_a_request_to_a_pgp_agency_is_mailed_encrypted_to_its_staff_key(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer, people: People
) -> None:
    await exchange.edges["hub"].submit(Submission(REQUEST, ("csc",)))
    contact = "front.door@csc.demo.example"

    async def mailed() -> bool:
        return bool(acknowledgements(relay, contact))

    await eventually(mailed)
    raw = acknowledgements(relay, contact)[-1]
    assert b"multipart/encrypted" in raw and b"<InformationRequest" not in raw
    plaintext = people.gpg.decrypt(raw.split(b"application/octet-stream", 1)[1]).data
    assert b'filename="request.xml"' in plaintext and b"Form: InformationResponse" in plaintext


async def test_a_reminder_for_an_email_only_agency_is_mailed(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer
) -> None:
    """An Escalation in probation's inbox, as the escalator delivers one, goes out by mail."""
    now = utc_now()
    overdue = str(uuid.uuid4())
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id="CASE-REMINDER-1",
        message_type="Escalation",
        sender="gateway",
        recipients=("probation",),
        created_at=now,
        purpose="gateway-operations",
        lawful_bases=("uk-gdpr-6-1-e",),
        in_reply_to=overdue,
        rag="Amber",
    )
    manager = EscalationContact("MASH team manager", "hub", phone="01632 960999", name="M Lee")
    payload = notices.escalation(
        overdue, "CASE-REMINDER-1", "response", 1, "Amber", now, now, "probation", [manager]
    )
    signer = keystore.load_signing_identity(exchange.config, "gateway", now)
    sealed = seal_bytes(
        fields, payload, signer, recipient_keys(exchange.config.registry, ("probation",), now)
    )
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)
        await publish(deliver, sealed, routing_key="probation", message_id=fields.message_id)
    contact = "pdu@probation.demo.example"

    def reminders() -> list[bytes]:
        return [raw for raw in acknowledgements(relay, contact) if overdue.encode() in raw]

    async def mailed() -> bool:
        return bool(reminders())

    await eventually(mailed)
    assert b"Reminder (level 1): probation has not yet met a response deadline" in reminders()[0]
    assert b"M Lee, MASH team manager, hub, 01632 960999" in reminders()[0]


def _before_starttls(port: int) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        return [client.mail(NURSE), client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")]


async def test_mail_and_auth_before_starttls_are_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    replies = await asyncio.to_thread(_before_starttls, running.port)
    for code, reply in replies:
        assert code == 530 and reply.startswith(b"5.7.0 Must issue a STARTTLS"), reply
    await nothing_reached_the_exchange(exchange)


async def test_swaks_without_tls_is_refused_and_with_tls_relaying_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    server = f"127.0.0.1:{running.port}"
    plain = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        server,
        "--from",
        NURSE,
        "--to",
        HUB,
        "--timeout",
        "10",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = (await plain.communicate())[0].decode()
    assert plain.returncode != 0 and "530 5.7.0 Must issue a STARTTLS" in output, output
    relay = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        server,
        "--tls",
        "--from",
        NURSE,
        "--to",
        "someone@elsewhere.example",
        "--timeout",
        "10",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = (await relay.communicate())[0].decode()
    assert relay.returncode != 0 and "550 5.7.1 Relaying denied" in output, output
    await nothing_reached_the_exchange(exchange)


async def test_relay_to_a_foreign_domain_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    reply = await asyncio.to_thread(
        send, running.port, NURSE, "victim@elsewhere.example", mail(NURSE, b"\r\nhello\r\n")
    )
    await refused_with(exchange, reply, 550, "5.7.1", "Relaying denied")


async def test_unknown_mailbox_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    reply = await asyncio.to_thread(
        send, running.port, NURSE, "nobody@intake.demo.example", mail(NURSE, b"\r\nhello\r\n")
    )
    await refused_with(exchange, reply, 550, "5.1.1", "No such mailbox")


async def test_unlisted_sender_domain_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    sender = "someone@gmail.example"
    reply = await asyncio.to_thread(send, running.port, sender, HUB, mail(sender, b"\r\nhi\r\n"))
    await refused_with(exchange, reply, 550, "5.7.1", "not on this intake's allowlist")


async def test_unsigned_mail_from_a_pgp_domain_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    reply = await asyncio.to_thread(
        send, running.port, OFFICER, HUB, mail(OFFICER, content_with_xml(REFERRAL))
    )
    await refused_with(exchange, reply, 550, "5.7.1", "must be signed")


async def test_valid_but_unpinned_key_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    running, gateway = intake
    data = pgp_mail(people, gateway, signer=people.stranger.address, from_address=OFFICER)
    before = intake_results("refused", "key-unpinned")
    reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
    await refused_with(exchange, reply, 550, "5.7.1", "not registered to a staff member of police")
    assert intake_results("refused", "key-unpinned") == before + 1


async def test_from_not_matching_the_signer_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    running, gateway = intake
    colleague = people.colleague.address
    data = pgp_mail(people, gateway, signer=OFFICER, from_address=colleague)
    reply = await asyncio.to_thread(send, running.port, colleague, HUB, data)
    await refused_with(exchange, reply, 550, "5.7.1", "does not match the address registered")


@pytest.mark.parametrize(
    ("who", "check"),
    [("expired", "has expired"), ("revoked", "has been revoked"), ("unknown", "is unknown")],
)
async def test_expired_revoked_and_unknown_keys_are_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People, who: str, check: str
) -> None:
    running, gateway = intake
    person = getattr(people, who)
    data = mail(
        person.address,
        encrypted(signed(content_with_xml(REFERRAL), people, person), people, gateway),
    )
    reply = await asyncio.to_thread(send, running.port, person.address, HUB, data)
    await refused_with(exchange, reply, 550, "5.7.5", check)


async def test_tampered_signed_part_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    running, gateway = intake
    entity = signed(content_with_xml(REFERRAL), people, people.officer)
    tampered = entity.replace(b"Referral attached.", b"Referral attacked.")
    assert tampered != entity
    data = mail(OFFICER, encrypted(tampered, people, gateway))
    reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
    await refused_with(exchange, reply, 550, "5.7.7", "altered after signing")


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        (b"\r\nfirst\n.\nMAIL FROM:<x@police.demo.example>\r\n", "bare LF"),
        (b"\r\nfirst\r.\rsecond\r\n", "bare CR"),
    ],
)
async def test_smuggling_payloads_are_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], payload: bytes, found: str
) -> None:
    running, _ = intake
    data = f"From: {NURSE}\r\nTo: {HUB}\r\nSubject: x\r\n".encode() + payload
    reply = await asyncio.to_thread(send_raw_data, running.port, NURSE, HUB, data)
    await refused_with(exchange, reply, 550, "5.6.0", found)


async def test_oversize_mail_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    limit = running.config.max_message_bytes
    body = (b"x" * 76 + b"\r\n") * (limit // 78 + 10)
    before = intake_results("refused", "size")
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, mail(NURSE, b"\r\n" + body))
    await refused_with(exchange, reply, 552, "5.3.4", "Message too big")
    assert intake_results("refused", "size") == before + 1


async def _hello(port: int) -> bytes:
    """One SMTP session over STARTTLS with asyncio streams: EHLO, STARTTLS, EHLO, NOOP, QUIT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line

    try:
        assert (await reply()).startswith(b"220")
        writer.write(b"EHLO client.example\r\n")
        assert (await reply()).startswith(b"250")
        writer.write(b"STARTTLS\r\n")
        assert (await reply()).startswith(b"220")
        await writer.start_tls(client_tls())
        writer.write(b"EHLO client.example\r\n")
        assert (await reply()).startswith(b"250")
        writer.write(b"NOOP\r\n")
        answer = await reply()
        writer.write(b"QUIT\r\n")
        await reply()
        return answer[:3]
    finally:
        writer.close()


async def test_two_hundred_concurrent_connections_are_handled(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    assert running.config.max_connections >= 200
    answers = await asyncio.gather(*(_hello(running.port) for _ in range(200)))
    assert answers == [b"250"] * 200


# --- a tls domain's mail must be vouched for by its mail server -------------------------


async def test_anonymous_mail_claiming_a_tls_domain_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    """The attack as it was run: swaks over STARTTLS, From a `tls` domain, no signature."""
    running, _ = intake
    swaks = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"127.0.0.1:{running.port}",
        "--tls",
        "--from",
        NURSE,
        "--to",
        HUB,
        "--header",
        f"From: {NURSE}",
        "--header",
        "Subject: Referral",
        "--body",
        "Please see this child today.",
        "--timeout",
        "10",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = (await swaks.communicate())[0].decode()
    assert swaks.returncode != 0, output
    assert "550 5.7.20 Mail from health.demo.example must carry a DKIM signature" in output, output
    reply = await asyncio.to_thread(
        send, running.port, NURSE, HUB, mail(NURSE, content_with_xml(REFERRAL), dkim_signed=False)
    )
    await refused_with(exchange, reply, 550, "5.7.20", "must carry a DKIM signature by health")


async def test_a_dkim_signature_that_is_not_the_senders_own_or_does_not_verify_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    unsigned = mail(NURSE, content_with_xml(REFERRAL), dkim_signed=False)
    elsewhere = PROBATION_SERVER.sign(unsigned)  # probation's valid signature on health's mail
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, elsewhere)
    await refused_with(exchange, reply, 550, "5.7.22", "No DKIM signature by the From domain")
    forged = PROBATION_SERVER.sign(unsigned, domain=TLS_DOMAIN)  # claims health, wrong key
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, forged)
    await refused_with(exchange, reply, 550, "5.7.20", "(s=mash) does not verify")
    altered = mail(NURSE, content_with_xml(REFERRAL)).replace(b"Referral attached.", b"Rewritten.")
    reply = await asyncio.to_thread(send, running.port, NURSE, HUB, altered)
    await refused_with(exchange, reply, 550, "5.7.20", "body hash mismatch")


async def test_a_domain_on_client_certificates_takes_mail_only_from_its_pinned_server(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    pki = housing_pki(exchange)
    data = mail(HOUSING_OFFICER, content_with_xml(REFERRAL))
    none = await asyncio.to_thread(send, running.port, HOUSING_OFFICER, HUB, data)
    await refused_with(exchange, none, 550, "5.7.1", "pinned TLS client certificate; this session")
    rogue = await asyncio.to_thread(
        send, running.port, HOUSING_OFFICER, HUB, data, pki.tls("other")
    )
    await refused_with(
        exchange, rogue, 550, "5.7.1", f"(SHA-256 {pki.fingerprint('other')}) is not pinned"
    )
    code, reply = await asyncio.to_thread(
        send, running.port, HOUSING_OFFICER, HUB, data, pki.tls("pinned")
    )
    assert code == 250 and "(tls-only)" in reply, reply
    message_id = reply.split()[4]
    await eventually(lambda: _async_true(delivered_to_hub(exchange, message_id)))
    assert delivered_to_hub(exchange, message_id)[0].header.fields.sender == "housing"


# --- replays ------------------------------------------------------------------------------


async def test_the_same_signed_mail_sent_twice_is_accepted_once(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    running, gateway = intake
    data = pgp_mail(people, gateway)
    code, reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
    assert code == 250, reply
    first = reply.split()[4]
    await eventually(lambda: _async_true(delivered_to_hub(exchange, first)))
    await settle(exchange)
    again = await asyncio.to_thread(send, running.port, OFFICER, HUB, data)
    await refused_with(exchange, again, 550, "5.7.1", "the same Message-ID was accepted at")
    assert f"as {first}; a second copy is refused as a replay" in again[1]


def header_of(data: bytes, name: bytes) -> bytes:
    return data.split(name + b": ", 1)[1].split(b"\r\n", 1)[0]


async def test_a_replay_under_a_new_message_id_or_new_content_under_an_old_one_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    running, gateway = intake
    entity = encrypted(signed(content_with_xml(REFERRAL), people, people.officer), people, gateway)
    original = mail(OFFICER, entity)
    code, reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, original)
    assert code == 250, reply
    first = reply.split()[4]
    await eventually(lambda: _async_true(delivered_to_hub(exchange, first)))
    await settle(exchange)
    rewrapped = mail(OFFICER, entity)  # the captured signed content, a fresh Message-ID
    reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, rewrapped)
    await refused_with(exchange, reply, 550, "5.7.1", "the same signed content was accepted")
    assert first in reply[1]
    fresh = pgp_mail(people, gateway)  # newly signed content, under the first mail's id
    reused = fresh.replace(header_of(fresh, b"Message-ID"), header_of(original, b"Message-ID"))
    assert reused != fresh
    reply = await asyncio.to_thread(send, running.port, OFFICER, HUB, reused)
    await refused_with(exchange, reply, 550, "5.7.1", "the same Message-ID was accepted")


async def test_a_dkim_signed_mail_sent_twice_is_accepted_once(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    data = mail(NURSE, content_with_xml(REFERRAL))
    code, reply = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
    assert code == 250, reply
    await eventually(lambda: _async_true(delivered_to_hub(exchange, reply.split()[4])))
    await settle(exchange)
    again = await asyncio.to_thread(send, running.port, NURSE, HUB, data)
    await refused_with(exchange, again, 550, "5.7.1", "refused as a replay")


async def test_a_signature_older_than_the_replay_window_is_refused(
    exchange: Exchange, intake: tuple[RunningIntake, str], people: People
) -> None:
    """Past the window the memory has forgotten, so an old signature is refused outright."""
    running, gateway = intake
    veteran = people.veteran.address
    data = mail(
        veteran,
        encrypted(signed(content_with_xml(REFERRAL), people, people.veteran), people, gateway),
    )
    reply = await asyncio.to_thread(send, running.port, veteran, HUB, data)
    await refused_with(exchange, reply, 550, "5.7.1", "more than 14 days ago: too old to tell")


# --- recipients per transaction, and the listener's TLS ------------------------------------


def _recipients(port: int, count: int) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        assert client.mail(NURSE)[0] == 250
        replies = [client.rcpt(HUB) for _ in range(count)]
        client.rset()
        return replies


async def test_recipients_past_the_cap_get_452_too_many_recipients(
    exchange: Exchange, intake: tuple[RunningIntake, str]
) -> None:
    running, _ = intake
    cap = running.config.max_recipients
    assert cap == 100
    replies = await asyncio.to_thread(_recipients, running.port, 1000)
    assert [code for code, _ in replies[:cap]] == [250] * cap
    assert {reply for reply in replies[cap:]} == {
        (
            452,
            b"4.5.3 Too many recipients: at most 100 per transaction; send to the others in "
            b"another",
        )
    }


async def test_the_intake_offers_only_ecdhe_with_aead_and_tls13(
    intake: tuple[RunningIntake, str],
) -> None:
    running, _ = intake
    handshake = tls_scan.smtp_starttls(running.port)
    accepted = await asyncio.to_thread(tls_scan.accepted_tls12, handshake)
    assert accepted == tls_scan.GOOD_TLS12_ECDSA, sorted(accepted)  # the dev certificate is EC
    assert not [name for name in accepted if tls_scan.unsafe(name)]
    tls13 = await asyncio.to_thread(tls_scan.accepted_tls13, running.port, True)
    assert tls13 == tls_scan.GOOD_TLS13
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert not await asyncio.to_thread(tls_scan.accepts_version, handshake, old)
