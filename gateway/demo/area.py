"""The demo area that `mash-gateway init` writes: seven agencies and the agreements between them.

Pure: returns TOML text. The agreements mirror a typical MASH flow
(domain.md): partners refer to the hub, the hub requests information from
partners, partners respond, and the hub feeds its decision back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from gateway.config.config_checks import LOOPBACK_HOSTS
from gateway.config.intake_config import DEFAULT_TLS_CERT


@dataclass(frozen=True)
class DemoAgency:
    id: str
    name: str
    kind: str
    contact: str


DEMO_AGENCIES = (
    DemoAgency(
        "gateway", "Demo Borough MASH gateway (router)", "gateway", "mash.ops@hub.demo.example"
    ),
    DemoAgency("hub", "Demo Borough MASH", "hub", "mash.managers@hub.demo.example"),
    DemoAgency(
        "police", "Demo Constabulary Public Protection Unit", "police", "ppu@police.demo.example"
    ),
    DemoAgency(
        "csc",
        "Demo Borough Children's Social Care",
        "childrens-social-care",
        "front.door@csc.demo.example",
    ),
    DemoAgency(
        "health",
        "Demo Integrated Care Board Safeguarding Team",
        "health",
        "safeguarding@health.demo.example",
    ),
    DemoAgency(
        "probation", "Demo Probation Delivery Unit", "probation", "pdu@probation.demo.example"
    ),
    DemoAgency(
        "education",
        "Demo Borough Education Safeguarding",
        "education",
        "dsl@education.demo.example",
    ),
    DemoAgency(
        "housing",
        "Demo Borough Housing Options",
        "housing",
        "housing.options@housing.demo.example",
    ),
)

PARTNERS = tuple(a.id for a in DEMO_AGENCIES if a.kind not in {"hub", "gateway"})

CHILD_BASES = (
    "uk-gdpr-6-1-e",
    "uk-gdpr-9-2-g-dpa-sch1-18",
    "uk-gdpr-9-2-h-dpa-sch1-2",
    "dpa-2018-part3-sch8-4",
    "ca-1989-s17",
    "ca-1989-s47",
    "ca-2004-s10",
    "ca-2004-s11",
)


# The secure-mail intake (gateway/config/intake_config.py): police sign and encrypt with PGP/MIME
# (pin each officer's key under staff). Health is a `tls` domain: its staff do not sign, so its
# mail server must: each mail carries a DKIM signature by health.demo.example, verified against
# the key pinned here (`init` makes the pair; the private half, under agency-systems/health/,
# stands in for health's mail server). Without a pinned key the intake would read it from DNS.
# Housing has no case system, only e-mail with PGP: it is an e-mail-only agency (inbox =
# true), so the intake takes its inbox and mails it requests, encrypted to its pinned staff
# keys, through the relay. In the demo the relay is a stand-in for housing's mail server that
# `mash-gateway demo` runs on a free port with the intake's development certificate
# (gateway/demo/mail.py); name your real relay, and the CA that signed its certificate, here.
MAIL_ONLY_DOMAIN = "housing.demo.example"
TLS_DOMAIN = "health.demo.example"
DKIM_SELECTOR = "mash"
MAIL_ONLY_AGENCY = "housing"
DEMO_RELAY = (
    "\n[intake.relay]\n"
    'host = "127.0.0.1"\n'
    "port = 2525\n"
    "starttls = true\n"
    'sender = "mash-intake@intake.demo.example"\n'
    f'ca_file = "{DEFAULT_TLS_CERT}"\n'  # the intake's own development certificate
)


def demo_intake(mail_only_staff: tuple[tuple[str, str], ...], health_dkim: str | None) -> str:
    """The [intake] table; ``mail_only_staff`` pins (address, fingerprint) for housing,
    ``health_dkim`` health's DKIM public key (the p= value)."""
    staff = ", ".join(
        f'{{ address = "{address}", fingerprint = "{fingerprint}" }}'
        for address, fingerprint in mail_only_staff
    )
    dkim_keys = (
        f'dkim_keys = [{{ selector = "{DKIM_SELECTOR}", public_key = "{health_dkim}" }}]\n'
        if health_dkim is not None
        else ""
    )
    return (
        "\n[intake]\n"
        'listen = "127.0.0.1:8025"\n'
        'hostname = "intake.demo.example"\n'
        'mailboxes = ["hub"]\n'
        "\n[[intake.domains]]\n"
        'domain = "police.demo.example"\n'
        'agency = "police"\n'
        'policy = "pgp"\n'
        "staff = []\n"
        "\n[[intake.domains]]\n"
        f'domain = "{TLS_DOMAIN}"\n'
        'agency = "health"\n'
        'policy = "tls"\n'
        'authenticate = ["dkim"]\n'
        f"{dkim_keys}"
        "\n[[intake.domains]]\n"
        f'domain = "{MAIL_ONLY_DOMAIN}"\n'
        f'agency = "{MAIL_ONLY_AGENCY}"\n'
        'policy = "pgp"\n'
        "inbox = true\n"
        f"staff = [{staff}]\n"
        f"{DEMO_RELAY}"
    )


# Agency adapters (gateway/config/adapter_config.py), one per partner profile in adapters/profiles/:
# `mash-gateway adapter AGENCY` runs one. File drops live under agency-systems/; the HTTP
# adapters need a token (`mash-gateway adapter --issue-token csc probation`); health needs
# a MESH server (a local mesh-sandbox here) and its secrets under keys/private/mesh/.
DEMO_ADAPTERS = (
    "\n[[adapters]]\n"
    'agency = "police"\nprofile = "police"\nrecipients = ["hub"]\ntransport = "filedrop"\n'
    '[adapters.filedrop]\nroot = "agency-systems/police"\n'
    "\n[[adapters]]\n"
    'agency = "education"\nprofile = "education"\nrecipients = ["hub"]\ntransport = "filedrop"\n'
    '[adapters.filedrop]\nroot = "agency-systems/education"\n'
    "\n[[adapters]]\n"
    'agency = "csc"\nprofile = "csc"\nrecipients = ["hub"]\ntransport = "http"\n'
    '[adapters.http]\nlisten = "127.0.0.1:8441"\nwebhook = "http://127.0.0.1:9441/mash"\n'
    "\n[[adapters]]\n"
    'agency = "probation"\nprofile = "probation"\nrecipients = ["hub"]\ntransport = "http"\n'
    '[adapters.http]\nlisten = "127.0.0.1:8442"\nwebhook = "http://127.0.0.1:9442/mash"\n'
    "\n[[adapters]]\n"
    'agency = "health"\nprofile = "health"\nrecipients = ["hub"]\ntransport = "mesh"\n'
    '[adapters.mesh]\nurl = "http://127.0.0.1:8700"\nmailbox = "X26ABC1"\n'
    'recipient = "X26ABC2"\nworkflow_id = "MASH_GATEWAY"\n'
    'workflows = { InformationRequest = "MASH_INFO_REQUEST", Decision = "MASH_DECISION" }\n'
    'root = "agency-systems/health"\n'
)


# Working hours for the deadlines (gateway/config/deadline_config.py): the demo borough is in
# England, so England and Wales's bank holidays close it; add the area's own closures under
# ``holidays``.
DEMO_CALENDAR = (
    '\n[deadlines.calendar]\nzone = "Europe/London"\nnation = "england-and-wales"\nholidays = []\n'
)


def _list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _agreement(
    agreement_id: str,
    senders: tuple[str, ...],
    recipients: tuple[str, ...],
    types: tuple[str, ...],
    today: date,
) -> str:
    return (
        "\n[[agreements]]\n"
        f'id = "{agreement_id}"\n'
        f"senders = {_list(senders)}\n"
        f"recipients = {_list(recipients)}\n"
        f"message_types = {_list(types)}\n"
        'purposes = ["child-safeguarding", "adult-safeguarding"]\n'
        f"lawful_bases = {_list(CHILD_BASES)}\n"
        f"valid_from = {today.isoformat()}\n"
        f"valid_until = {today.replace(year=today.year + 2).isoformat()}\n"
    )


def _plain_allowance(broker_url: str) -> str:
    """The explicit ``allow_plain`` a plain URL off loopback needs (config/broker_config.py)."""
    url = urlsplit(broker_url)
    if url.scheme != "amqp" or url.hostname in LOOPBACK_HOSTS:
        return ""
    return (
        "# plain AMQP off loopback (a private compose network): use amqps:// elsewhere\n"
        "allow_plain = true\n"
    )


def demo_config(
    broker_url: str,
    today: date,
    mail_only_staff: tuple[tuple[str, str], ...] = (),
    health_dkim: str | None = None,
) -> str:
    """gateway.toml for the demo area, without keys (init appends them).

    ``mail_only_staff`` pins housing's staff keys; without them the area is whole, but the
    intake cannot mail housing a request (it would be readable only on TLS).
    ``health_dkim`` pins health's DKIM key; without it the intake looks it up in DNS.
    """
    parts = [
        "# MASH gateway area configuration (demo area written by `mash-gateway init`).\n"
        "# Keys are appended by `mash-gateway keys`; private keys live in keys/private (0600).\n",
        "\n[area]\n"
        'id = "demo"\n'
        'name = "Demo Borough MASH"\n'
        'hub = "hub"\n'
        'gateway = "gateway"\n'
        'private_keys = "keys/private"\n',
        f'\n[broker]\nurl = "{broker_url}"\n{_plain_allowance(broker_url)}',
        '\n[store]\nurl = "sqlite:///state/gateway.db"\n',
        DEMO_CALENDAR,
    ]
    for agency in DEMO_AGENCIES:
        parts.append(
            "\n[[agencies]]\n"
            f'id = "{agency.id}"\n'
            f'name = "{agency.name}"\n'
            f'kind = "{agency.kind}"\n'
            f'contacts = ["{agency.contact}"]\n'
        )
    parts.append(_agreement("isa-demo-referrals", PARTNERS, ("hub",), ("Referral",), today))
    parts.append(
        _agreement(
            "isa-demo-requests", ("hub",), PARTNERS, ("InformationRequest", "Decision"), today
        )
    )
    parts.append(
        _agreement("isa-demo-responses", PARTNERS, ("hub",), ("InformationResponse",), today)
    )
    parts.append(demo_intake(mail_only_staff, health_dkim))
    parts.append(DEMO_ADAPTERS)
    return "".join(parts)
