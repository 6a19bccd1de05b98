"""Check digits of the person identifiers a payload may carry.

The XSD only knows an identifier's scheme and rough shape; a mistyped NHS
number is well-formed XML that points at somebody else. So every identifier
is checked with its scheme's own algorithm before a message leaves an edge:
- NHS number and UPN through python-stdnum (``stdnum.gb.nhs``, ``stdnum.gb.upn``);
- PNC ID ``YYYY/NNNNNNNL`` here: the check letter is int(YY + 7-digit serial)
  mod 23 mapped onto ``ZABCDEFGHJKLMNPQRTUVWXY``; shorter serials are
  zero-padded to 7 digits first.

Pure: strings in, a reason string (or None) out.
"""

from __future__ import annotations

import re
from enum import StrEnum

from stdnum.exceptions import InvalidChecksum, InvalidComponent, ValidationError
from stdnum.gb import nhs, upn

PNC_CHECK_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"
_PNC_ID = re.compile(r"(\d{4})/(\d{1,7})([A-Z])")
_NHS_NUMBER = re.compile(r"\d{10}")
_UPN = re.compile(r"[A-Z]\d{11}[A-Z0-9]")


class IdentifierScheme(StrEnum):
    NHS_NUMBER = "nhs-number"
    UPN = "upn"
    PNC_ID = "pnc-id"
    LOCAL = "local"


def nhs_number_problem(value: str) -> str | None:
    """Why ``value`` is not a valid NHS number (10 digits, modulus 11), or None."""
    if not _NHS_NUMBER.fullmatch(value):
        return f"NHS number {value} is not 10 digits"
    try:
        nhs.validate(value)
    except ValidationError:
        return f"NHS number {value} fails its check digit"
    return None


def upn_problem(value: str) -> str | None:
    """Why ``value`` is not a valid UPN (check letter, LA, establishment, year, serial), or None."""
    if not _UPN.fullmatch(value):
        return f"UPN {value} is not a check letter followed by 12 characters"
    try:
        upn.validate(value)
    except InvalidChecksum:
        return f"UPN {value} fails its check letter"
    except InvalidComponent:
        return f"UPN {value} has an unknown local authority number {value[1:4]}"
    except ValidationError:
        return f"UPN {value} is not a valid UPN"
    return None


def pnc_check_letter(year: str, serial: str) -> str:
    """The check letter for a PNC ID of a 4-digit year and a serial of up to 7 digits."""
    return PNC_CHECK_LETTERS[int(year[2:] + serial.zfill(7)) % 23]


def pnc_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid PNC ID (``YYYY/NNNNNNNL``), or None."""
    match = _PNC_ID.fullmatch(value)
    if match is None:
        return f"PNC ID {value} is not in the form YYYY/NNNNNNNL"
    year, serial, letter = match.groups()
    if pnc_check_letter(year, serial) != letter:
        return f"PNC ID {value} fails its check letter"
    return None


def local_id_problem(value: str, system: str | None) -> str | None:
    """A local id means nothing without the system that issued it."""
    if not system:
        return f"local identifier {value} has no system attribute naming the issuing system"
    return None


def identifier_problem(scheme: str, value: str, system: str | None = None) -> str | None:
    """Why an identifier of ``scheme`` is invalid, or None when it passes its checks."""
    if scheme == IdentifierScheme.LOCAL:
        return local_id_problem(value, system)
    if system is not None:
        return f"identifier of scheme {scheme} must not carry a system attribute"
    if scheme == IdentifierScheme.NHS_NUMBER:
        return nhs_number_problem(value)
    if scheme == IdentifierScheme.UPN:
        return upn_problem(value)
    if scheme == IdentifierScheme.PNC_ID:
        return pnc_id_problem(value)
    return f"unknown identifier scheme {scheme!r}"
