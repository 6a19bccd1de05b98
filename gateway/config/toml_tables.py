"""gateway.toml as a sequence of tables, as text: split, filtered and joined without rewriting.

Comments, key order and the append-only key history survive, because lines
are moved, never re-rendered. Used for the partner host's config
(partner_config.py) and for laying a signed area directory over a host's
own config (the directory's tables replace the host's: ``with_directory``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The tables the signed area directory carries (core/area_directory.py): who is
# in the area, their keys and revocations, and what they may share.
DIRECTORY_TABLES = frozenset({"agencies", "keys", "revocations", "agreements"})

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class Table:
    name: str  # "" for the lines before the first header
    lines: list[str]


def tables(text: str) -> list[Table]:
    found = [Table("", [])]
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            found.append(Table(header.group(2), []))
        found[-1].lines.append(line)
    return found


def directory_tables(text: str) -> str:
    """The directory's part of a config: every agencies, keys, revocations and agreements table."""
    return "".join(
        "".join(t.lines) for t in tables(text) if t.name.split(".")[0] in DIRECTORY_TABLES
    )


def with_directory(local: str, directory: str) -> str:
    """``local`` with its directory tables replaced by ``directory``'s."""
    kept = "".join(
        "".join(t.lines) for t in tables(local) if t.name.split(".")[0] not in DIRECTORY_TABLES
    )
    return kept.rstrip("\n") + "\n\n" + directory
