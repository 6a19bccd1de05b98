"""The web console over real HTTP on the demo area: sign-in, roles, CSRF, headers, no personal data.

What an operator relies on: nothing is shown before signing in; a form
without its CSRF token does nothing (403); a viewer reads but cannot reach
an operator's page; the CSP forbids every script; the console listens in
clear only on loopback; and no page, on an area whose payloads are full of
personal data, shows any of it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli import main
from gateway.config.metrics_config import Listen
from gateway.console.accounts import Accounts, Role, users_path
from gateway.console.guard import CSP
from gateway.console.server import ConsoleError, check_listen, serving
from gateway.console.throttle import LIMIT
from gateway.core.quarantine import Filter
from gateway.services import metrics_server
from gateway.services.quarantine_keeper import QuarantineKeeper, audit_path
from tests.integration import console_harness
from tests.integration.console_harness import (
    PASSWORD,
    DemoArea,
    Quarantined,
    client,
    console_on,
)
from tests.integration.exchange_harness import eventually
from tests.integration.quarantine_harness import REFERRAL_PATH, add_agreement
from tests.integration.test_demo import PERSONAL_DATA, payload_personal_data

pytestmark = pytest.mark.integration
demo_area = console_harness.demo_area  # the session's demo run
quarantined = console_harness.quarantined

PAGES = ("/", "/deadlines", "/quarantine", "/quarantine?status=all", "/keys", "/audit")
# The quarantined Referral's own personal data, besides the demo's.
QUARANTINED_DATA = sorted(set(PERSONAL_DATA) | payload_personal_data([REFERRAL_PATH]))


async def test_every_page_needs_sign_in_and_carries_the_strict_csp(demo_area: DemoArea) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        cookies = []
        for path in (*PAGES, f"/case?id={demo_area.case}"):
            status, _, response = await browser.get(path)
            assert status == 303 and response.headers["Location"] == "/sign-in", path
            assert response.headers["Content-Security-Policy"] == CSP
            cookies += response.headers.getall("Set-Cookie", [])
        (cookie,) = cookies  # one anonymous session, kept across the redirects
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        status, page, response = await browser.get("/sign-in")
        assert status == 200 and "<script" not in page
        assert "script-src" not in CSP and "default-src 'none'" in CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"


async def test_sign_in_checks_the_password_and_is_audited_with_the_operator(
    demo_area: DemoArea,
) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        await browser.get("/sign-in")
        status, page, _ = await browser.post("/sign-in", {"name": "olive", "password": "wrong"})
        assert status == 401 and "Wrong account name or password" in page
        status, _, _ = await browser.post("/sign-in", {"name": "nobody", "password": PASSWORD})
        assert status == 401
        anonymous = browser.csrf
        status, _, response = await browser.post(
            "/sign-in", {"name": "olive", "password": PASSWORD}
        )
        assert status == 303 and response.headers["Location"] == "/"
        status, page, _ = await browser.get("/")
        assert status == 200 and "olive (operator)" in page
        assert browser.csrf != anonymous  # a new session, so a new token
        status, _, _ = await browser.post("/sign-out", {})
        assert status == 303
        assert (await browser.get("/"))[0] == 303
    records = [
        json.loads(line)
        for line in (demo_area.config.base_dir / "state" / "console-audit.jsonl").open()
    ]
    actions = [(r["operator"], r["action"]) for r in records if r["kind"] == "operator"]
    assert ("olive", "sign-in") in actions and ("olive", "sign-out") in actions
    assert ("nobody", "sign-in") not in actions
    chain = str(demo_area.config.base_dir / "state" / "console-audit.jsonl")
    verify = ["--config", str(demo_area.config_path), "audit", "verify", "--file", chain]
    assert await asyncio.to_thread(main, verify) == 0  # signed to its last record, store agrees


async def test_a_form_without_its_csrf_token_is_refused(demo_area: DemoArea) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        await browser.get("/sign-in")
        status, _, _ = await browser.post(
            "/sign-in", {"name": "olive", "password": PASSWORD}, with_csrf=False
        )
        assert status == 403
        status, _, _ = await browser.post(
            "/sign-in", {"name": "olive", "password": PASSWORD, "csrf": "forged"}, with_csrf=False
        )
        assert status == 403
        assert await browser.sign_in("olive") == 303
        for path, form in (("/cases", {"id": demo_area.case}), ("/sign-out", {})):
            status, text, _ = await browser.post(path, form, with_csrf=False)
            assert status == 403 and "CSRF" in text, path
        assert (await browser.get("/"))[
            0
        ] == 200  # still signed in: the forged sign-out did nothing


async def test_a_viewer_reads_every_page_but_reaches_no_operator_page(demo_area: DemoArea) -> None:
    async with console_on(demo_area.config) as listening:
        async with client(listening) as viewer:
            await viewer.sign_in("victor")
            status, page, _ = await viewer.get("/")
            assert status == 200 and 'href="/audit"' not in page
            for path in ("/deadlines", "/keys", f"/case?id={demo_area.case}"):
                assert (await viewer.get(path))[0] == 200, path
            assert (await viewer.get("/audit"))[0] == 403
        async with client(listening) as operator:
            await operator.sign_in("olive")
            status, page, _ = await operator.get("/")
            assert 'href="/audit"' in page
            status, page, _ = await operator.get("/audit")
            assert status == 200 and "victor" in page and "sign-in" in page


async def test_pages_show_the_case_and_its_deadlines_and_no_personal_data(
    demo_area: DemoArea,
) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        await browser.sign_in("olive")
        seen = {}
        for path in (
            "/sign-in",
            *PAGES,
            f"/case?id={demo_area.case}",
            "/case?id=no-such-case",
            "/case?id=A/../x",
        ):
            status, seen[path], _ = await browser.get(path)
            assert status in (200, 303, 404), path
        status, _, response = await browser.post("/cases", {"id": demo_area.case})
        assert response.headers["Location"] == f"/case?id={demo_area.case}"
    deadlines = seen["/deadlines"]
    assert "probation" in deadlines and "Amber" in deadlines
    breached = deadlines[deadlines.index("Breached in the last") :]
    row = next(r for r in breached.split("<tr") if "<td>probation</td>" in r)
    assert '<td class="n">2</td>' in row  # escalation level 2 reached
    case = seen[f"/case?id={demo_area.case}"]
    assert "owed by probation to hub" in case and "met late" in case
    assert "escalated level 1" in case and "escalated level 2" in case
    assert "Referral" in case and "Decision" in case and "InformationResponse" in case
    assert seen["/"].count("<tr>") > 3 and "Flows today" in seen["/"]
    assert "in force" in seen["/keys"] and "current" in seen["/keys"]
    assert "No such case" in seen["/case?id=no-such-case"]
    assert "<code>A/../x</code>" in seen["/case?id=A/../x"]  # ids may hold '/': in the query
    for path, page in seen.items():
        for value in PERSONAL_DATA:
            assert value not in page, f"{value!r} shown on {path}"


def test_add_user_hashes_with_argon2_in_a_0600_file(demo_area: DemoArea) -> None:
    assert (
        main(
            [
                "--config",
                str(demo_area.config_path),
                "console",
                "add-user",
                "nina",
                "--role",
                "viewer",
            ]
        )
        == 0
    )
    path = demo_area.config.base_dir / "state" / "console-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = json.loads(path.read_text())
    assert users["nina"]["role"] == "viewer" and users["nina"]["hash"].startswith("$argon2id$")
    assert PASSWORD not in path.read_text()
    assert (
        main(
            [
                "--config",
                str(demo_area.config_path),
                "console",
                "add-user",
                "Bad Name",
                "--role",
                "viewer",
            ]
        )
        == 1
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("console.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "console.crt", folder / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_tls_is_required_off_loopback_and_makes_the_cookie_secure(
    demo_area: DemoArea, tmp_path: Path
) -> None:
    with pytest.raises(ConsoleError, match="only on loopback"):
        check_listen("0.0.0.0", None, None)
    with pytest.raises(ConsoleError, match="only on loopback"):
        async with serving(demo_area.config, host="192.0.2.1", poll_broker=False):
            pass
    cert, key = self_signed(tmp_path)
    async with (
        console_on(demo_area.config, cert=cert, key=key) as listening,
        client(listening) as browser,
    ):
        assert listening.url.startswith("https://")
        status, _, response = await browser.get("/sign-in")
        assert status == 200
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Host-mash-console=") and "Secure" in cookie
        assert "max-age" in response.headers["Strict-Transport-Security"]
        health = ["health", "--ca", str(cert), f"{listening.url}readyz"]
        assert await asyncio.to_thread(main, health) == 0  # as compose's healthcheck asks it
        untrusted = ["health", f"{listening.url}readyz"]
        assert await asyncio.to_thread(main, untrusted) == 1  # not trusted without its CA


async def test_repeated_failed_sign_ins_are_refused_for_a_while(demo_area: DemoArea) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        await browser.get("/sign-in")
        for _ in range(LIMIT):
            status, _, _ = await browser.post("/sign-in", {"name": "olive", "password": "guess"})
            assert status == 401
        status, page, _ = await browser.post("/sign-in", {"name": "olive", "password": PASSWORD})
        assert status == 429 and "Too many failed sign-ins" in page


async def test_a_removed_account_is_signed_out_at_its_next_request(
    demo_area: DemoArea, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(demo_area.config_path)
    Accounts(users_path(demo_area.config)).add("rita", Role.OPERATOR, PASSWORD)
    async with console_on(demo_area.config) as listening, client(listening) as browser:
        await browser.sign_in("rita")
        assert (await browser.get("/"))[0] == 200
        assert await asyncio.to_thread(main, ["--config", config, "console", "users"]) == 0
        assert "rita  operator" in capsys.readouterr().out
        removed = ["--config", config, "console", "remove-user", "rita"]
        assert await asyncio.to_thread(main, removed) == 0
        status, _, response = await browser.get("/")
        assert status == 303 and response.headers["Location"] == "/sign-in"
    assert await asyncio.to_thread(main, removed) == 1  # no such account any more
    chain = (demo_area.config.base_dir / "state" / "console-audit.jsonl").open()
    done = [(r["action"], r["target"], r["role"]) for r in map(json.loads, chain) if "action" in r]
    assert ("remove-user", "rita", "host") in done  # by the host user who ran the command


async def test_the_console_serves_healthz_and_readyz_without_a_session(
    demo_area: DemoArea,
) -> None:
    async with console_on(demo_area.config) as listening, client(listening) as probe:
        status, text, response = await probe.get("/healthz")
        assert status == 200 and json.loads(text) == {"alive": True}
        assert "Set-Cookie" not in response.headers  # a probe starts no session
        status, text, response = await probe.get("/readyz")
        assert status == 200 and json.loads(text)["checks"]["store (console)"] == "ok"
        assert "Set-Cookie" not in response.headers
        assert (await probe.post("/readyz", {}))[0] == 403  # only GET is open


async def test_the_overview_shows_each_services_readiness(demo_area: DemoArea) -> None:
    async with metrics_server.serving(Listen("127.0.0.1", 0)) as port:
        services = [
            ("router", f"http://127.0.0.1:{port}/readyz"),
            ("intake", "http://127.0.0.1:1/readyz"),  # nothing listens there
        ]
        async with (
            console_on(demo_area.config, services=services) as listening,
            client(listening) as browser,
        ):
            await browser.sign_in("victor")

            async def both_asked() -> bool:
                return "not asked yet" not in (await browser.get("/"))[1]

            await eventually(both_asked)
            page = (await browser.get("/"))[1]
    section = page[page.index('id="services"') : page.index('id="owed"')]
    router, intake = section.split("<td>router</td>")[1], section.split("<td>intake</td>")[1]
    assert '"ok">ready</td><td>ok</td>' in router.split("</tr>")[0]
    assert "not ready" in intake.split("</tr>")[0] and "no answer" in intake.split("</tr>")[0]


async def test_a_viewer_sees_the_quarantine_but_cannot_release(quarantined: Quarantined) -> None:
    entry_page = f"/quarantine/entry?id={quarantined.entry_id}"
    async with console_on(quarantined.config) as listening, client(listening) as viewer:
        await viewer.sign_in("victor")
        status, listing, _ = await viewer.get("/quarantine")
        assert status == 200 and quarantined.entry_id in listing
        assert "no agreement lets police send Referral to education" in listing
        assert "<td>policy</td>" in listing and "<td>police</td>" in listing
        status, page, _ = await viewer.get(entry_page)
        assert status == 200 and quarantined.message_id in page
        assert "Release" not in page and "Discard" not in page  # no buttons for a viewer
        assert (await viewer.get(f"/quarantine/release?id={quarantined.entry_id}"))[0] == 403
        status, _, _ = await viewer.post("/quarantine/release", {"id": quarantined.entry_id})
        assert status == 403  # with a good CSRF token: the role refuses it
        assert "<strong>held</strong>" in (await viewer.get(entry_page))[1]
    for value in QUARANTINED_DATA:
        assert value not in listing and value not in page, value


async def test_an_operator_releases_after_adding_the_agreement_and_it_is_audited(
    quarantined: Quarantined,
) -> None:
    entry_id, exchange = quarantined.entry_id, quarantined.exchange
    seen = {}
    async with console_on(quarantined.config) as listening, client(listening) as operator:
        await operator.sign_in("olive")
        status, seen["confirm"], _ = await operator.get(f"/quarantine/release?id={entry_id}")
        assert status == 200 and f"Release {entry_id}" in seen["confirm"]
        status, text, _ = await operator.post(
            "/quarantine/release", {"id": entry_id}, with_csrf=False
        )
        assert status == 403 and "CSRF" in text
        status, seen["discard"], _ = await operator.post(
            "/quarantine/discard", {"id": entry_id, "reason": " "}
        )
        assert status == 400 and "needs a reason" in seen["discard"]

        await add_agreement(exchange)
        status, _, response = await operator.post("/quarantine/release", {"id": entry_id})
        assert status == 303
        assert response.headers["Location"] == f"/quarantine/entry?id={entry_id}"

        async def delivered() -> bool:
            return len(exchange.inboxes["education"].of_type("Referral")) == 1

        await eventually(delivered)
        (got,) = exchange.inboxes["education"].of_type("Referral")
        assert got.header.fields.message_id == quarantined.message_id
        status, seen["entry"], _ = await operator.get(f"/quarantine/entry?id={entry_id}")
        assert "<strong>released</strong>" in seen["entry"] and "by olive" in seen["entry"]
        status, seen["again"], _ = await operator.post("/quarantine/release", {"id": entry_id})
        assert status == 409 and "already released" in seen["again"]
        status, seen["audit"], _ = await operator.get("/audit")
    row = next(r for r in seen["audit"].split("<tr>") if "quarantine released" in r)
    assert "<td>olive</td>" in row and quarantined.message_id in row
    chain = audit_path(quarantined.config)
    records = [json.loads(line) for line in chain.read_text(encoding="utf-8").splitlines()]
    done = [(r["outcome"], r["operator"]) for r in records if r["kind"] == "decision"]
    assert done == [("released", "olive")]  # once, by the account that did it
    verify = ["--config", str(exchange.config.path), "audit", "verify", "--file", str(chain)]
    assert await asyncio.to_thread(main, verify) == 0
    for name, page in seen.items():
        for value in QUARANTINED_DATA:
            assert value not in page, f"{value!r} shown on {name}"


async def test_an_operator_discards_with_a_reason(quarantined: Quarantined) -> None:
    entry_id = quarantined.entry_id
    async with console_on(quarantined.config) as listening, client(listening) as operator:
        await operator.sign_in("olive")
        status, page, _ = await operator.get(f"/quarantine/discard?id={entry_id}")
        assert status == 200 and 'name="reason"' in page and "required" in page
        form = {"id": entry_id, "reason": "sent in error (ticket 42)"}
        assert (await operator.post("/quarantine/discard", form))[0] == 303
        status, page, _ = await operator.get("/quarantine?status=discarded")
        assert entry_id in page
        assert "nothing held" not in page
        status, page, _ = await operator.get(f"/quarantine/entry?id={entry_id}")
        assert "<strong>discarded</strong>" in page and "sent in error (ticket 42)" in page
        status, page, _ = await operator.post("/quarantine/release", {"id": entry_id})
        assert status == 409 and "cannot be released" in page
        assert entry_id not in (await operator.get("/quarantine"))[1]  # no longer held


async def test_an_unreachable_broker_is_named_and_the_entry_stays_held(
    quarantined: Quarantined,
) -> None:
    entry_id = quarantined.entry_id
    elsewhere = replace(quarantined.config, broker_url="amqp://guest:guest@127.0.0.1:1/")
    async with console_on(elsewhere) as listening, client(listening) as operator:
        await operator.sign_in("olive")
        status, page, _ = await operator.post("/quarantine/release", {"id": entry_id})
        assert status == 503 and "RabbitMQ" in page and "<strong>held</strong>" in page


async def test_a_release_that_fails_again_names_the_new_entry(quarantined: Quarantined) -> None:
    entry_id, exchange = quarantined.entry_id, quarantined.exchange
    async with console_on(quarantined.config) as listening, client(listening) as operator:
        await operator.sign_in("olive")
        # No agreement added: the router refuses it again, into quarantine.
        assert (await operator.post("/quarantine/release", {"id": entry_id}))[0] == 303

        async def again() -> bool:
            async with QuarantineKeeper(quarantined.config, exchange.router_store) as keeper:
                await keeper.collect()  # what the keeper service does every few seconds
            return "Failed again" in (await operator.get(f"/quarantine/entry?id={entry_id}"))[1]

        await eventually(again)
        page = (await operator.get(f"/quarantine/entry?id={entry_id}"))[1]
    (held,) = await exchange.router_store.quarantined(Filter())
    assert held.entry_id != entry_id and f"/quarantine/entry?id={held.entry_id}" in page
    assert "no agreement lets police send Referral to education" in page
