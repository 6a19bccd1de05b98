"""The controlled lists, read from schemas/common.xsd so the schema is their single source.

Config checks, the CLI and the policy use these sets; adding a lawful basis
or a purpose is one edit to the XSD.
"""

from __future__ import annotations

from functools import cache

from lxml import etree

from gateway.core.resources import schemas_dir
from gateway.core.xmlsafe import schema_parser

XS = "{http://www.w3.org/2001/XMLSchema}"

# Messages the gateway itself issues; no sharing agreement governs them.
SYSTEM_MESSAGE_TYPES = frozenset({"DeliveryReceipt", "NonDelivery", "Escalation"})
SYSTEM_PURPOSE = "gateway-operations"


@cache
def _common() -> etree._Element:
    return etree.parse(str(schemas_dir() / "common.xsd"), parser=schema_parser()).getroot()


@cache
def enumeration(type_name: str) -> frozenset[str]:
    """The enumerated values of simple type ``type_name`` in common.xsd."""
    for simple in _common().iter(f"{XS}simpleType"):
        if simple.get("name") == type_name:
            return frozenset(str(e.get("value")) for e in simple.iter(f"{XS}enumeration"))
    raise LookupError(f"common.xsd has no enumerated type {type_name!r}")


def agency_kinds() -> frozenset[str]:
    return enumeration("AgencyKind")


def message_types() -> frozenset[str]:
    return enumeration("MessageType")


def purposes() -> frozenset[str]:
    return enumeration("Purpose")


def lawful_bases() -> frozenset[str]:
    return enumeration("LawfulBasis")


def rag_ratings() -> frozenset[str]:
    return enumeration("Rag")
