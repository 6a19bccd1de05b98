"""A hostile document cannot read files, reach the network or exhaust memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from gateway.core.xmlsafe import MAX_DEPTH, UnsafeXmlError, XmlLimits, parse, text_problem

pytestmark = pytest.mark.unit


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def test_plain_document_parses() -> None:
    root = parse(b'<Referral xmlns="urn:mash-gateway:v1"><Narrative>x</Narrative></Referral>')
    assert root.tag == "{urn:mash-gateway:v1}Referral"


def test_external_file_entity_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = (f'<!DOCTYPE r [<!ENTITY s SYSTEM "{secret.as_uri()}">]><r>&s;</r>').encode()
    with pytest.raises(UnsafeXmlError) as caught:
        parse(data, "xxe.xml")
    assert "TOP-SECRET-CONTENT" not in str(caught.value)
    assert str(caught.value) == "xxe.xml:1: DOCTYPE declarations are not allowed"


def test_billion_laughs_is_refused_quickly() -> None:
    entities = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    ]
    data = f"<!DOCTYPE r [{''.join(entities)}]><r>&l9;</r>".encode()
    started = time.monotonic()
    with pytest.raises(UnsafeXmlError, match=r"^laughs\.xml:"):
        parse(data, "laughs.xml")
    assert time.monotonic() - started < 1.0


def test_internal_dtd_without_entities_is_still_refused() -> None:
    with pytest.raises(UnsafeXmlError, match="DOCTYPE declarations are not allowed"):
        parse(b"<!DOCTYPE r [<!ELEMENT r ANY>]><r/>", "dtd.xml")


def test_nesting_at_the_limit_parses_and_one_deeper_is_refused() -> None:
    parse(nested(MAX_DEPTH))
    with pytest.raises(
        UnsafeXmlError, match=f"deep.xml:1: element nesting deeper than {MAX_DEPTH}"
    ):
        parse(nested(MAX_DEPTH + 1), "deep.xml")


def test_a_comment_or_instruction_one_level_too_deep_is_refused_and_names_its_line() -> None:
    inner = b"<a>" * MAX_DEPTH
    outer = b"</a>" * MAX_DEPTH
    parse(b"<a>" * (MAX_DEPTH - 1) + b"<!-- at the limit -->" + b"</a>" * (MAX_DEPTH - 1))
    for node in (b"<!-- one deeper -->", b"<?pi one deeper?>"):
        with pytest.raises(UnsafeXmlError, match=r"^deep\.xml:2: element nesting deeper"):
            parse(inner + b"\n" + node + outer, "deep.xml")


def test_very_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    with pytest.raises(UnsafeXmlError, match=r"^deep\.xml:"):
        parse(nested(100_000), "deep.xml")


def test_oversize_document_is_refused_before_parsing() -> None:
    data = b"<r>" + b"x" * 2000 + b"</r>"
    parse(data, limits=XmlLimits(max_bytes=len(data)))
    with pytest.raises(UnsafeXmlError, match=f"big.xml: document is {len(data)} bytes, limit 1024"):
        parse(data, "big.xml", XmlLimits(max_bytes=1024))


def test_not_well_formed_names_source_and_line() -> None:
    with pytest.raises(UnsafeXmlError, match=r"^broken\.xml:2: not well-formed XML"):
        parse(b"<r>\n<a></b></r>", "broken.xml")


class _CountingHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = b'<!ENTITY leak "fetched">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dtd_server() -> Iterator[str]:
    _CountingHandler.requests = []
    server = HTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE r SYSTEM "{url}/evil.dtd"><r/>',
        '<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/param.dtd"> %p;]><r>&leak;</r>',
        '<!DOCTYPE r [<!ENTITY e SYSTEM "{url}/entity.xml">]><r>&e;</r>',
    ],
    ids=["external-dtd", "parameter-entity", "external-entity"],
)
def test_network_dtds_and_entities_are_never_fetched(dtd_server: str, template: str) -> None:
    with pytest.raises(UnsafeXmlError, match=r"^net\.xml:"):
        parse(template.format(url=dtd_server).encode(), "net.xml")
    assert _CountingHandler.requests == []


def test_xinclude_is_not_processed(dtd_server: str) -> None:
    xi = "http://www.w3.org/2001/XInclude"
    root = parse(f'<r xmlns:xi="{xi}"><xi:include href="{dtd_server}/inc.xml"/></r>'.encode())
    assert [child.tag for child in root] == [f"{{{xi}}}include"]
    assert _CountingHandler.requests == []


@pytest.mark.parametrize("text", ["plain", "tab\tand\r\nbreaks", "é ✓ 🙂", "\ue000\ufffd"])
def test_text_xml_can_carry_has_no_problem(text: str) -> None:
    assert text_problem(text) is None


@pytest.mark.parametrize(
    ("text", "named"),
    [("a\x00b", "U+0000"), ("\x0b", "U+000B"), ("x\ud800", "U+D800"), ("\uffff", "U+FFFF")],
)
def test_text_xml_cannot_carry_names_the_first_such_character(text: str, named: str) -> None:
    problem = text_problem(text)
    assert problem is not None and named in problem
