"""Attachments as the payload names them: safe names, the ``[limits]`` checks, the manifest.

Pure. The payload's ``Attachments`` element (common.xsd) names each file:
name, media type, size, SHA-256, an optional description. The envelope
carries the bytes in sections of their own (gateway/core/envelope/
attachment_cipher.py); this module decides what may be attached before a
byte is read, writes the manifest into a payload that lacks one, and checks
on receipt that the files opened are the files the payload names.

A file name is a bare name a receiving system can write as it stands: no
path separators, not ``.`` or ``..`` (nor any name that is only dots), no
``..`` anywhere, no control characters, at most 255 bytes of UTF-8 (what a
Linux or Windows file system takes). The XSD says the same except for the
byte count and the ``..`` inside a name, which it cannot; both are checked
here on the sending and the receiving side.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from lxml import etree

from gateway.core.errors import GatewayError
from gateway.core.schemas import NAMESPACE
from gateway.core.xmlsafe import NOT_XML_CHARACTER

_NS = "{" + NAMESPACE + "}"
GIB = 1024**3
MAX_NAME_BYTES = 255
# The message types whose schemas have an Attachments element.
ATTACHMENT_TYPES = frozenset({"Referral", "InformationRequest", "InformationResponse", "Decision"})


class AttachmentRefused(GatewayError):
    """An attachment that may not travel; ``check`` is the FailedCheck a refusal names."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check


@dataclass(frozen=True)
class AttachmentFacts:
    """One file as the payload names it."""

    file_name: str
    media_type: str
    size: int
    sha256: str
    description: str | None = None


@dataclass(frozen=True)
class AttachmentLimits:
    """``[limits]`` in gateway.toml: sized for a MASH's body maps, scans and videos."""

    max_attachment_bytes: int = 5 * GIB
    max_total_bytes: int = 20 * GIB
    max_attachments: int = 100
    # A transfer whose pieces have not all arrived this long after its envelope is dropped.
    transfer_timeout: timedelta = timedelta(hours=6)


def check_file_name(name: str) -> str:
    """``name`` if a receiving system may write it as it stands; refused naming the rule."""
    shown = name.encode("unicode_escape").decode("ascii")[:80]
    if not name or set(name) == {"."}:
        raise AttachmentRefused("attachment", f"file name {shown!r} is empty or only dots")
    if "/" in name or "\\" in name or ":" in name:
        raise AttachmentRefused(
            "attachment", f"file name {shown!r} holds a path separator ('/', '\\' or ':')"
        )
    if ".." in name:
        raise AttachmentRefused("attachment", f"file name {shown!r} holds '..'")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise AttachmentRefused("attachment", f"file name {shown!r} holds a control character")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise AttachmentRefused(
            "attachment", f"file name {shown!r}... is {size} bytes, limit {MAX_NAME_BYTES}"
        )
    return name


def safe_file_names(given: Sequence[str | None]) -> list[str]:
    """Names ``check_file_name`` and ``check_unique_names`` accept, made from the names a
    sender gave (an e-mail's attachments): the last path component, without control
    characters, characters XML cannot hold or ``..``, cut to 255 bytes keeping the
    extension; ``attachment-N`` for a missing or dots-only name; ``-2``, ``-3``... before
    the extension of a name taken already (case-blind)."""
    names: list[str] = []
    taken: set[str] = set()
    for number, raw in enumerate(given, start=1):
        name = re.split(r"[/\\:]", raw or "")[-1]
        name = "".join(c for c in name if unicodedata.category(c) != "Cc")
        name = NOT_XML_CHARACTER.sub("\ufffd", name)
        while ".." in name:
            name = name.replace("..", ".")
        if not name.strip("."):
            name = f"attachment-{number}"
        stem, dot, extension = name.rpartition(".")
        if not stem or len(extension) > 16:
            stem, dot, extension = name, "", ""
        candidate, copy = _within_bytes(stem, dot + extension), 1
        while unicodedata.normalize("NFC", candidate).casefold() in taken:
            copy += 1
            candidate = _within_bytes(stem, f"-{copy}{dot}{extension}")
        taken.add(unicodedata.normalize("NFC", candidate).casefold())
        names.append(check_file_name(candidate))
    return names


def _within_bytes(stem: str, tail: str) -> str:
    """``stem + tail``, the stem cut so the whole is at most MAX_NAME_BYTES of UTF-8."""
    room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail


def check_unique_names(names: Sequence[str]) -> None:
    """Two files of one message may not share a name (compared case-blind, as some systems do)."""
    seen: set[str] = set()
    for name in names:
        folded = unicodedata.normalize("NFC", name).casefold()
        if folded in seen:
            raise AttachmentRefused("attachment", f"two attachments are named {name!r}")
        seen.add(folded)


def check_limits(files: Sequence[tuple[str, int]], limits: AttachmentLimits) -> None:
    """Refuse (check ``limit``) what ``[limits]`` forbids, from names and sizes alone."""
    if len(files) > limits.max_attachments:
        raise AttachmentRefused(
            "limit",
            f"{len(files)} attachments; [limits] max_attachments is {limits.max_attachments}",
        )
    for name, size in files:
        if size > limits.max_attachment_bytes:
            raise AttachmentRefused(
                "limit",
                f"attachment {name!r} is {size} bytes; [limits] max_attachment_bytes is "
                f"{limits.max_attachment_bytes}",
            )
    total = sum(size for _, size in files)
    if total > limits.max_total_bytes:
        raise AttachmentRefused(
            "limit",
            f"attachments total {total} bytes; [limits] max_total_bytes is "
            f"{limits.max_total_bytes}",
        )


def manifest(root: etree._Element) -> tuple[AttachmentFacts, ...]:
    """The files a schema-valid payload names in its ``Attachments`` element, in order."""
    listed = root.find(f"{_NS}Attachments")
    if listed is None:
        return ()
    return tuple(
        AttachmentFacts(
            file_name=item.findtext(f"{_NS}Filename") or "",
            media_type=item.findtext(f"{_NS}MediaType") or "",
            size=int(item.findtext(f"{_NS}SizeBytes") or "0"),
            sha256=item.findtext(f"{_NS}Sha256") or "",
            description=item.findtext(f"{_NS}Description"),
        )
        for item in listed.iterchildren(f"{_NS}Attachment")
    )


def with_manifest(
    root: etree._Element, files: Sequence[AttachmentFacts], message_type: str, source: str
) -> bytes | None:
    """The payload naming ``files``: None when it names exactly them already (send it as is),
    new bytes with an ``Attachments`` element appended when it names none.

    A payload that names other files (another name, size or digest) is refused:
    the sender's document and the files given must agree.
    """
    if files and message_type not in ATTACHMENT_TYPES:
        raise AttachmentRefused("attachment", f"{source}: a {message_type} carries no attachments")
    named = manifest(root)
    if named:
        if [(f.file_name, f.size, f.sha256) for f in named] != [
            (f.file_name, f.size, f.sha256) for f in files
        ]:
            raise AttachmentRefused(
                "attachment",
                f"{source}: its Attachments name {[f.file_name for f in named]} "
                f"(with their sizes and digests), not the files given "
                f"{[f.file_name for f in files]}",
            )
        return None
    if not files:
        return None
    copy = etree.fromstring(etree.tostring(root))
    listed = etree.SubElement(copy, f"{_NS}Attachments")
    for facts in files:
        item = etree.SubElement(listed, f"{_NS}Attachment")
        etree.SubElement(item, f"{_NS}Filename").text = facts.file_name
        etree.SubElement(item, f"{_NS}MediaType").text = facts.media_type
        etree.SubElement(item, f"{_NS}SizeBytes").text = str(facts.size)
        etree.SubElement(item, f"{_NS}Sha256").text = facts.sha256
        if facts.description:
            etree.SubElement(item, f"{_NS}Description").text = facts.description
    return bytes(etree.tostring(copy, xml_declaration=True, encoding="UTF-8"))


def check_received(
    named: Sequence[AttachmentFacts], opened: Sequence[tuple[int, str]], message_id: str
) -> None:
    """Each opened file (length, SHA-256) is the one the payload names at its place."""
    if len(named) != len(opened):
        raise AttachmentRefused(
            "attachment",
            f"message {message_id} names {len(named)} attachment(s) and carries {len(opened)}",
        )
    check_unique_names([facts.file_name for facts in named])
    for index, (facts, (length, digest)) in enumerate(zip(named, opened, strict=True), start=1):
        check_file_name(facts.file_name)
        if length != facts.size:
            raise AttachmentRefused(
                "attachment",
                f"message {message_id}: attachment {index} is {length} bytes, "
                f"the payload declares {facts.size}",
            )
        if digest != facts.sha256:
            raise AttachmentRefused(
                "attachment",
                f"message {message_id}: attachment {index}'s SHA-256 differs from the payload's",
            )
