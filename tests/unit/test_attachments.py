"""Attachments before a byte is read: safe names, [limits], and the payload's manifest."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest

from gateway.config.area_config import ConfigError
from gateway.config.limits_config import parse_limits
from gateway.core import schemas
from gateway.core.attachments import (
    GIB,
    AttachmentFacts,
    AttachmentLimits,
    AttachmentRefused,
    check_file_name,
    check_limits,
    check_received,
    check_unique_names,
    manifest,
    safe_file_names,
    with_manifest,
)
from gateway.core.resources import schemas_dir

pytestmark = pytest.mark.unit

LETTER = AttachmentFacts("discharge-letter.pdf", "application/pdf", 1234, "a" * 64)
PHOTO = AttachmentFacts("body map é.png", "image/png", 99, "b" * 64, "Body map")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../etc/passwd", "path separator"),
        ("a/b.pdf", "path separator"),
        ("a\\b.pdf", "path separator"),
        ("C:evil", "path separator"),
        ("..", "only dots"),
        (".", "only dots"),
        ("", "empty"),
        ("report..pdf", "'..'"),
        ("bell\x07.pdf", "control character"),
        ("new\nline.pdf", "control character"),
        ("x" * 300, "300 bytes, limit 255"),
        ("é" * 128, "256 bytes, limit 255"),
    ],
)
def test_unsafe_file_names_are_refused_naming_the_rule(name: str, rule: str) -> None:
    with pytest.raises(AttachmentRefused, match=rule) as caught:
        check_file_name(name)
    assert caught.value.check == "attachment"


def test_ordinary_names_pass() -> None:
    for name in ("letter.pdf", ".hidden", "Body map (1).png", "é" * 127, "x" * 255):
        assert check_file_name(name) == name


def test_limits_refuse_naming_the_limit() -> None:
    limits = AttachmentLimits(max_attachment_bytes=10, max_total_bytes=15, max_attachments=2)
    check_limits([("a", 10), ("b", 5)], limits)
    with pytest.raises(AttachmentRefused, match="max_attachment_bytes is 10") as caught:
        check_limits([("a", 11)], limits)
    assert caught.value.check == "limit"
    with pytest.raises(AttachmentRefused, match="max_total_bytes is 15"):
        check_limits([("a", 10), ("b", 6)], limits)
    with pytest.raises(AttachmentRefused, match="max_attachments is 2"):
        check_limits([("a", 1)] * 3, limits)


def fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"gateway.toml: {key}: {problem}")


def parse(text: str) -> AttachmentLimits:
    return parse_limits(tomllib.loads(text).get("limits"), fail)


def test_limits_default_to_gigabytes() -> None:
    limits = parse("")
    assert limits.max_attachment_bytes == 5 * GIB
    assert limits.max_total_bytes == 20 * GIB
    assert limits.max_attachments == 100
    assert limits.transfer_timeout == timedelta(hours=6)


def test_limits_table_sets_each_key() -> None:
    limits = parse(
        '[limits]\nmax_attachment = "500MiB"\nmax_total = 2147483648\n'
        'max_attachments = 7\ntransfer_timeout = "90m"\n'
    )
    assert limits == AttachmentLimits(500 * 1024**2, 2 * GIB, 7, timedelta(minutes=90))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('max_attachment = "5 gigs"', "limits.max_attachment: '5 gigs' is not a size"),
        ("max_attachments = 101", "limits.max_attachments: must be a whole number from 0 to 100"),
        ('max_attachment = "30GiB"', "limits.max_attachment: is larger than limits.max_total"),
        ('transfer_timeout = "soon"', "limits.transfer_timeout: 'soon' is not a duration"),
        ("max_size = 1", "limits.max_size: unknown key"),
        ("max_total = 0", "limits.max_total: must be more than 0 bytes"),
    ],
)
def test_a_bad_limits_key_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(f"[limits]\n{text}\n")


@pytest.mark.parametrize(
    "example",
    ["referral.xml", "information-request.xml", "information-response.xml", "decision.xml"],
)
def test_a_manifest_is_added_to_each_type_that_carries_files_and_stays_valid(example: str) -> None:
    source = (schemas_dir() / "examples" / "valid" / example).read_bytes()
    document = schemas.checked(source, example)
    named = manifest(document.root)
    if named:  # the example names its files already: sent as it is
        assert with_manifest(document.root, named, document.message_type, example) is None
        return
    added = with_manifest(document.root, [LETTER, PHOTO], document.message_type, example)
    assert added is not None
    again = schemas.checked(added, example)
    assert manifest(again.root) == (LETTER, PHOTO)
    assert with_manifest(again.root, [LETTER, PHOTO], again.message_type, example) is None


def test_a_payload_naming_other_files_is_refused() -> None:
    source = (schemas_dir() / "examples" / "valid" / "decision.xml").read_bytes()
    document = schemas.checked(source, "decision.xml")
    added = with_manifest(document.root, [LETTER], "Decision", "d.xml")
    assert added is not None
    named = schemas.checked(added, "d.xml")
    with pytest.raises(AttachmentRefused, match="not the files given"):
        with_manifest(named.root, [PHOTO], "Decision", "d.xml")


def test_a_receipt_carries_no_files() -> None:
    source = (schemas_dir() / "examples" / "valid" / "delivery-receipt.xml").read_bytes()
    document = schemas.checked(source, "r.xml")
    with pytest.raises(AttachmentRefused, match="a DeliveryReceipt carries no attachments"):
        with_manifest(document.root, [LETTER], document.message_type, "r.xml")


def test_received_files_must_be_the_ones_named() -> None:
    check_received([LETTER], [(1234, "a" * 64)], "m")
    with pytest.raises(
        AttachmentRefused, match="attachment 1 is 1233 bytes, the payload declares 1234"
    ):
        check_received([LETTER], [(1233, "a" * 64)], "m")
    with pytest.raises(AttachmentRefused, match="SHA-256 differs"):
        check_received([LETTER], [(1234, "c" * 64)], "m")
    with pytest.raises(AttachmentRefused, match="names 2 attachment"):
        check_received([LETTER, PHOTO], [(1234, "a" * 64)], "m")
    twin = AttachmentFacts("Discharge-Letter.PDF", "application/pdf", 1, "c" * 64)
    with pytest.raises(AttachmentRefused, match="two attachments are named"):
        check_received([LETTER, twin], [(1234, "a" * 64), (1, "c" * 64)], "m")


def test_names_a_sender_gave_are_made_safe_and_unique() -> None:
    """safe_file_names: what an e-mail partner's attachments are called on the exchange."""
    given = [
        "../../etc/passwd",
        "..",
        None,
        "a\x00b\x1f.txt",
        "report..final.pdf",
        "Report.final.PDF",
        "report.final.pdf",
        "\ufffe.doc",
        "\u00e9" * 200 + ".pdf",
        "x" * 300,
    ]
    names = safe_file_names(given)
    assert names[:7] == [
        "passwd",
        "attachment-2",
        "attachment-3",
        "ab.txt",
        "report.final.pdf",
        "Report.final-2.PDF",
        "report.final-3.pdf",
    ]
    assert names[8].endswith(".pdf") and len(names[8].encode()) <= 255
    for name in names:
        assert check_file_name(name) == name
    check_unique_names(names)
