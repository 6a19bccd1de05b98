"""The demo area that `mash-gateway init` writes: six partners and the agreements between them.

Pure: returns TOML text. The agreements mirror a typical MASH flow
(domain.md): partners refer to the hub, the hub requests information from
partners, partners respond, and the hub feeds its decision back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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


def demo_config(broker_url: str, today: date) -> str:
    """gateway.toml for the demo area, without keys (init appends them)."""
    parts = [
        "# MASH gateway area configuration (demo area written by `mash-gateway init`).\n"
        "# Keys are appended by `mash-gateway keys`; private keys live in keys/private (0600).\n",
        "\n[area]\n"
        'id = "demo"\n'
        'name = "Demo Borough MASH"\n'
        'hub = "hub"\n'
        'gateway = "gateway"\n'
        'private_keys = "keys/private"\n',
        f'\n[broker]\nurl = "{broker_url}"\n',
        '\n[store]\nurl = "sqlite:///state/gateway.db"\n',
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
    return "".join(parts)
