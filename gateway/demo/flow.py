"""The demo's multi-agency flow, run over a real exchange in a fresh vhost.

1. police refer a child to the hub;
2. the hub asks health, children's social care, probation and housing for
   information;
3. health and children's social care answer through their edges; probation
   stays silent; housing has only e-mail: the intake mails it the request,
   encrypted to its officer's key, and the officer's signed and encrypted
   reply comes back through the intake as its InformationResponse;
4. every delivery is receipted back to its sender;
5. probation's deadline passes: a level-1 reminder goes to probation with a
   notice to the hub, then a level-2 Escalation to the hub manager;
6. probation answers late (the breach is recorded), and the hub records its
   decision and sends it to the police.

Each agency with a system is an Edge with a handler that plays its case
system; housing's side of the mail is mail.py, and the intake runs as
`mash-gateway intake` would, on free ports. The router runs beside them on
a shortened clock (``DEMO_POLICY``: an Amber answer is due in seconds, not
working days). The payloads are the shipped examples, re-dated so the
deadlines they carry are in the future.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from gateway.broker.vhost import admin_for, vhost_url
from gateway.config.area_config import DEFAULT_CONFIG_NAME, AreaConfig, load_config
from gateway.core import deadlines as dl
from gateway.core.errors import GatewayError
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.core.schemas import NAMESPACE
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES
from gateway.core.xmlsafe import parse
from gateway.demo import mail as demo_mail
from gateway.demo.area import MAIL_ONLY_AGENCY
from gateway.demo.mail import Officer
from gateway.demo.setup import create_area
from gateway.infra.clock import utc_now
from gateway.intake import devkeys
from gateway.intake.service import running_intake
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.router import run_router
from gateway.services.tracking import case_report
from gateway.services.transfer_sender import AttachmentFile
from gateway.store import CaseReader, HandledMarks, store_from_url

EDGE_PARTNERS = ("health", "csc", "probation")
MAIL_ONLY_PARTNER = MAIL_ONLY_AGENCY
PARTNERS = (*EDGE_PARTNERS, MAIL_ONLY_PARTNER)
# What housing's officer writes into the mailed form (the request pre-fills its ids).
HOUSING_ANSWERS = {
    "Responder-Name": "Sam Okafor",
    "Responder-Role": "Housing options officer",
    "Purpose": "child-safeguarding",
    "Lawful-Basis": "uk-gdpr-6-1-e",
    "Consent": "not-sought",
    "Consent-Reason": "Seeking consent could increase the risk to the child.",
    "Necessary-And-Proportionate": "Only what the request asks, to assess the risk.",
    "Record": "Housing register | 2026-09-14 | Family placed in temporary accommodation "
    "after an eviction; rent arrears.",
    "Release-Condition": "no-onward-disclosure-without-originator-consent",
}
SILENT_PARTNER = "probation"
DECISION_BASES = ("uk-gdpr-6-1-e", "ca-1989-s17")
FLOW_TIMEOUT_S = 60.0
_CLOCK = dl.Counting.CLOCK
# The shortened clock: the area's calendar and ladder, with an Amber answer
# due in 4 s and level 2 three seconds later, around the clock, so the
# ladder climbs while you watch. Deliveries and decisions keep real timers.
DEMO_POLICY = replace(
    dl.default_policy(),
    response={**dl.DEFAULT_RESPONSE, "Amber": dl.Timer(dl.Duration(seconds=4), _CLOCK)},
    grace=dl.Timer(dl.Duration(seconds=3), _CLOCK),
)
DEMO_TICK_S = 0.5


def _example(*parts: str) -> bytes:
    return schemas_dir().joinpath("examples", *parts).read_bytes()


def redated(payload: bytes, element: str, at: datetime) -> bytes:
    """The payload with ``element`` set to ``at``: the hub's case system dating its request."""
    root = parse(payload, "demo payload")
    node = root.find(f"{{{NAMESPACE}}}{element}")
    if node is None:
        raise GatewayError(f"demo payload has no {element}")
    node.text = at.isoformat().replace("+00:00", "Z")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


ANSWERING = "the partners search their records: each answers, or stays silent"


@dataclass
class DemoCase:
    """The hub's and partners' case systems, reduced to what the demo needs to react."""

    correlation_id: str
    edges: dict[str, Edge] = field(default_factory=dict)
    responses: set[str] = field(default_factory=set)
    silent_request: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    failure: Exception | None = None
    say: Callable[[str], None] = print
    letter: Path | None = None  # health's answer carries it (discharge_letter)
    steps_said: set[int] = field(default_factory=set)

    def step(self, number: int, heading: str) -> None:
        """A numbered step, said once: its parts (one per partner) follow indented."""
        if number not in self.steps_said:
            self.steps_said.add(number)
            self.say(f"{number}. {heading}")

    def handler_for(self, agency: str) -> Callable[[Delivered], object]:
        async def handle(delivered: Delivered) -> None:
            await self.on_message(agency, delivered)

        return handle

    async def on_message(self, agency: str, delivered: Delivered) -> None:
        fields = delivered.header.fields
        kind = fields.message_type
        if kind in {"DeliveryReceipt", "NonDelivery"}:
            self.say(f"   {agency} got a {kind} for {fields.in_reply_to}")
            if kind == "NonDelivery":
                self.finished.set()
            return
        if kind == "Escalation":
            await self.on_escalation(agency, delivered)
            return
        self.say(f"   {agency} received {kind} {fields.message_id} from {fields.sender}")
        for file in delivered.attachments:
            facts = file.facts
            self.say(
                f"   with {facts.file_name} ({facts.media_type}, {facts.size} bytes, "
                f"sha256 {facts.sha256[:16]}...), verified"
            )
        if agency == "hub" and kind == "Referral":
            await self.request_information(fields.message_id)
        elif agency == SILENT_PARTNER and kind == "InformationRequest":
            self.step(3, ANSWERING)
            self.say(f"   {agency} is busy and stays silent")
            self.silent_request = fields.message_id
        elif agency in EDGE_PARTNERS and kind == "InformationRequest":
            self.step(3, ANSWERING)
            self.say(f"   {agency} researches its records and answers")
            await self.respond(agency, fields.message_id)
        elif agency == "hub" and kind == "InformationResponse":
            self.responses.add(fields.sender)
            if self.responses == set(PARTNERS):
                await self.decide()
        elif agency == "police" and kind == "Decision":
            self.finished.set()

    async def on_escalation(self, agency: str, delivered: Delivered) -> None:
        root = parse(delivered.payload, "escalation")
        level = root.findtext(f"{{{NAMESPACE}}}Level")
        silent = root.findtext(f"{{{NAMESPACE}}}SilentAgency")
        kind = root.findtext(f"{{{NAMESPACE}}}DeadlineKind")
        self.say(f"   {agency} got a level {level} Escalation: {silent}'s {kind} is overdue")
        if level == "1" and agency == SILENT_PARTNER:
            self.step(4, f"{silent}'s deadline passed: a reminder to it, a notice to the hub")
        if level == "2" and agency == "hub" and self.silent_request is not None:
            self.step(5, f"the hub manager calls {silent}, who answers late")
            request, self.silent_request = self.silent_request, None
            await self.respond(SILENT_PARTNER, request)

    async def read_housing_mail(self, server: demo_mail.MailServer, officer: Officer) -> None:
        """Housing's mailbox: answer each mailed request; acknowledgements need nothing."""
        try:
            while True:
                await self._read_one(await server.arrivals.get(), officer)
        except Exception as exc:  # the case cannot finish: say why at once, not at the timeout
            self.failure = exc
            self.finished.set()
            raise

    async def _read_one(self, raw: bytes, officer: Officer) -> None:
        mail = demo_mail.parsed(raw)
        subject = str(mail["Subject"])
        if not subject.startswith("Information request"):
            self.say(f"   {MAIL_ONLY_PARTNER}'s officer got a mail: {subject}")
            return
        self.step(3, ANSWERING)
        self.say(
            f"   {MAIL_ONLY_PARTNER} has only e-mail: its officer gets the request "
            "encrypted to their key and replies with the form, signed and encrypted"
        )
        code, reply = await asyncio.to_thread(officer.answer, mail, HOUSING_ANSWERS)
        if code != 250:
            raise GatewayError(f"the intake refused housing's answer: {code} {reply}")
        self.say(f"   the intake accepted the mail: {reply}")

    async def request_information(self, referral_id: str) -> None:
        request = redated(
            _example("valid", "information-request.xml"),
            "ResponseDue",
            utc_now() + timedelta(days=7),
        )
        self.step(2, f"the hub rates the referral Amber and asks {', '.join(PARTNERS)}")
        for partner in PARTNERS:
            await self.edges["hub"].submit(
                Submission(
                    request,
                    (partner,),
                    correlation_id=self.correlation_id,
                    in_reply_to=referral_id,
                    source="hub request",
                )
            )

    async def respond(self, agency: str, request_id: str) -> None:
        letter = self.letter if agency == "health" and self.letter is not None else None
        if letter is not None:
            self.say(f"   {agency} attaches its discharge letter ({letter.name})")
        await self.edges[agency].submit(
            Submission(
                _example("valid", "information-response.xml"),
                ("hub",),
                correlation_id=self.correlation_id,
                in_reply_to=request_id,
                source=f"{agency} response",
                attachments=() if letter is None else (AttachmentFile(letter, "application/pdf"),),
            )
        )

    async def decide(self) -> None:
        self.step(6, "all partners answered: the hub records its decision and tells the police")
        await self.edges["hub"].submit(
            Submission(
                _example("valid", "decision.xml"),
                ("police",),
                purpose="child-safeguarding",
                lawful_bases=DECISION_BASES,
                correlation_id=self.correlation_id,
                source="hub decision",
            )
        )


def discharge_letter(folder: Path) -> Path:
    """A made-up one-page PDF discharge letter (no real person), for health's answer."""
    text = b"BT /F1 12 Tf 72 720 Td (Discharge summary - made up for the MASH demo) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "discharge-letter.pdf"
    path.write_bytes(bytes(pdf))
    return path


async def _settled(store: CaseReader, correlation_id: str) -> bool:
    """Every case message is receipted or answered (receipts themselves are never receipted)."""
    messages = [
        m
        for m in await store.case_messages(correlation_id)
        if m.message_type not in SYSTEM_MESSAGE_TYPES
    ]
    return bool(messages) and all(
        m.state in {State.DELIVERED, State.ANSWERED, State.REJECTED} for m in messages
    )


async def run(
    area: Path,
    base_url: str,
    say: Callable[[str], None] = print,
    then: Callable[[AreaConfig, str], Awaitable[None]] | None = None,
) -> str:
    """Run the flow in a fresh vhost and area; return the case's correlation id.

    ``then`` (the area and the case) runs after the flow, before the vhost
    is deleted: `demo --console` serves the console there until stopped.
    """
    admin = await admin_for(base_url)
    vhost = f"mash-demo-{uuid.uuid4().hex[:8]}"
    await admin.create_vhost(vhost, urlsplit(base_url).username or "guest")
    try:
        case = await _run_in(area, vhost_url(base_url, vhost), vhost, say)
        if then is not None:
            await then(load_config(str(area / DEFAULT_CONFIG_NAME)), case)
        return case
    finally:
        await admin.delete_vhost(vhost)


async def _run_in(area: Path, url: str, vhost: str, say: Callable[[str], None]) -> str:
    create_area(area, url, replace=True, say=say)
    config = load_config(str(area / DEFAULT_CONFIG_NAME))
    store = store_from_url(config.store_url)
    await store.open()
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(
        run_router(config, store, stop, ready, policy=DEMO_POLICY, tick_s=DEMO_TICK_S)
    )
    case = DemoCase(
        f"MASH-DEMO-{uuid.uuid4().hex[:8].upper()}",
        say=say,
        letter=discharge_letter(area / "agency-systems" / "health"),
    )
    try:
        await asyncio.wait_for(ready.wait(), 15)
        say(f"router running on vhost {vhost}; tracking store {config.store_url}")
        async with _mail_side(config, store, case, say):
            for agency in ("hub", "police", *EDGE_PARTNERS):
                edge = Edge(config, agency, store)
                await edge.__aenter__()
                case.edges[agency] = edge
                await edge.consume(case.handler_for(agency), takes_attachments=True)  # type: ignore[arg-type]
            case.step(1, f"police refer a child to the hub (case {case.correlation_id})")
            await case.edges["police"].submit(
                Submission(
                    _example("demo", "police-referral.xml"),
                    ("hub",),
                    correlation_id=case.correlation_id,
                    source="police referral",
                )
            )
            await asyncio.wait_for(case.finished.wait(), FLOW_TIMEOUT_S)
            if case.failure is not None:
                raise case.failure
            await _wait_settled(store, case.correlation_id)
        say("\nCase timeline (ids, states and times only):")
        say(await case_report(store, case.correlation_id, config.store_url, utc_now()))
        return case.correlation_id
    finally:
        for edge in case.edges.values():
            await edge.__aexit__(None, None, None)
        stop.set()
        await router
        await store.close()


@asynccontextmanager
async def _mail_side(
    config: AreaConfig, store: HandledMarks, case: DemoCase, say: Callable[[str], None]
) -> AsyncIterator[None]:
    """Housing's mail server, the intake relaying to it, and the officer reading the mail."""
    intake = config.intake
    if intake is None or intake.relay is None:
        raise GatewayError(f"{config.path}: the demo needs [intake] and [intake.relay]")
    async with demo_mail.mail_server(intake.tls_cert, intake.tls_key) as server:
        on_free_ports = replace(intake, port=0, relay=replace(intake.relay, port=server.port))
        async with running_intake(replace(config, intake=on_free_ports), store) as running:
            say(f"secure-mail intake on port {running.port}; housing mail server on {server.port}")
            officer = Officer(
                config.path.parent / demo_mail.OFFICER_HOME,
                devkeys.key_address(intake),
                running.port,
                intake.tls_cert,
            )
            reader = asyncio.create_task(case.read_housing_mail(server, officer))
            try:
                yield
            finally:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader
                await asyncio.to_thread(devkeys.stop_agent, officer.home)


async def _wait_settled(store: CaseReader, correlation_id: str) -> None:
    for _ in range(int(FLOW_TIMEOUT_S * 10)):
        if await _settled(store, correlation_id):
            return
        await asyncio.sleep(0.1)
    raise GatewayError(f"case {correlation_id} did not settle within {FLOW_TIMEOUT_S:.0f} s")
