"""An agency profile: a folder with ``profile.toml`` and the mapping files it names.

Layout of ``profile.toml``::

    description = "Police: Public Protection Notice XML export"
    inbound = "ppn-to-referral.xsl"   # *.xsl: XSLT; *.json.xsl: JSON, then XSLT
                                      # (adapters/mapping/json_xslt.py); *.toml: CSV
                                      # mapping; "canonical": no mapping
    outbound = "canonical"            # what the agency system receives: "canonical" or *.xsl
    patterns = ["*.xml"]              # what the file drop picks up from the outbox
    media_types = ["application/xml"] # what the HTTP endpoint accepts

``profile = "police"`` in gateway.toml names a profile shipped in
adapters/profiles/; any other value is a folder path (relative to the
config), so an area can add its own profiles without touching the code.
Mappings are compiled once, when the profile loads.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.mapping import Canonical, Mapped, Mapping, MappingError
from adapters.mapping.csv_mapping import CsvMapping
from adapters.mapping.json_xslt import JsonXsltMapping
from adapters.mapping.xslt import XsltMapping
from gateway.core.errors import GatewayError
from gateway.services.edge import HandlerRefused

BUILTIN = Path(__file__).resolve().parent / "profiles"
CANONICAL = "canonical"


class ProfileError(GatewayError):
    """A profile folder is missing or wrong; the message names the file and key."""


@dataclass(frozen=True)
class Profile:
    name: str
    directory: Path
    inbound: Mapping
    outbound: Mapping
    patterns: tuple[str, ...]
    media_types: tuple[str, ...]

    def to_native(self, payload: bytes, source: str) -> bytes:
        """The one native document the agency system receives for a canonical payload.

        A payload that does not map never will: the edge answers it with a
        negative receipt (check ``handler``, the redacted reason) and
        quarantines it, rather than redelivering it.
        """
        try:
            documents: list[Mapped] = self.outbound(payload, source)
        except MappingError as exc:
            raise HandlerRefused(exc.redacted()) from exc
        return documents[0].payload


def profile_dir(value: str, base_dir: Path) -> Path:
    if "/" not in value and (BUILTIN / value).is_dir():
        return BUILTIN / value
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def load_profile(directory: Path) -> Profile:
    spec_path = directory / "profile.toml"
    try:
        spec = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{spec_path}: no such profile") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{spec_path}: cannot be read: {exc}") from None
    try:
        return Profile(
            name=directory.name,
            directory=directory,
            inbound=_mapping(spec, "inbound", directory, spec_path),
            outbound=_mapping(spec, "outbound", directory, spec_path),
            patterns=_strings(spec, "patterns", spec_path),
            media_types=_strings(spec, "media_types", spec_path),
        )
    except MappingError as exc:
        raise ProfileError(str(exc)) from None


def _mapping(spec: dict[str, Any], key: str, directory: Path, spec_path: Path) -> Mapping:
    value = spec.get(key, CANONICAL)
    if value == CANONICAL:
        return Canonical()
    if not isinstance(value, str):
        raise ProfileError(f"{spec_path}: {key}: must be 'canonical' or a mapping file name")
    if value.endswith(".json.xsl") and key == "inbound":
        return JsonXsltMapping(directory / value)
    if value.endswith(".xsl"):
        return XsltMapping(directory / value)
    if value.endswith(".toml") and key == "inbound":
        return CsvMapping(directory / value)
    raise ProfileError(f"{spec_path}: {key}: {value!r} is not an .xsl, .json.xsl or .toml mapping")


def _strings(spec: dict[str, Any], key: str, spec_path: Path) -> tuple[str, ...]:
    value = spec.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{spec_path}: {key}: must be a non-empty array of strings")
    return tuple(value)
