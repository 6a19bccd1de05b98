"""The web console in a real browser: headless Chromium (Debian's) driven by Playwright.

On the demo area: an operator signs in, finds probation's overdue request
(escalated to level 2, answered late) on the deadlines page and opens its
case. On a running exchange (the demo's vhost is gone once it has run): a
message quarantined for want of an agreement is released from the console
once the agreement is added, is delivered, and the release is on the audit
page with the operator's name; a viewer sees no button and is refused the
action. A form stripped of its CSRF token is refused; and axe-core finds no
serious or critical accessibility problem on any page. A screenshot of
each page is saved (``$MASH_CONSOLE_SCREENSHOTS``, else the test's
temporary folder).

Playwright's own browser download is never used: the browser is
/usr/bin/chromium (``apt-get install chromium``; ``.ci/run`` does it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

from gateway.console.server import Listening
from tests.integration import console_harness
from tests.integration.console_harness import PASSWORD, DemoArea, Quarantined, console_on
from tests.integration.exchange_harness import eventually
from tests.integration.quarantine_harness import REFERRAL_PATH, add_agreement
from tests.integration.test_demo import PERSONAL_DATA, payload_personal_data

pytestmark = pytest.mark.browser
demo_area = console_harness.demo_area  # the session's demo run
quarantined = console_harness.quarantined

CHROMIUM = Path("/usr/bin/chromium")
SERIOUS = {"serious", "critical"}
# The quarantined Referral's own personal data, besides the demo's.
SHOWN_NOWHERE = sorted(set(PERSONAL_DATA) | payload_personal_data([REFERRAL_PATH]))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MASH_CONSOLE_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def console(demo_area: DemoArea) -> AsyncIterator[Listening]:
    async with console_on(demo_area.config) as listening:
        yield listening


async def signed_in(browser: Browser, console: Listening, name: str) -> Page:
    page = await (await browser.new_context(base_url=console.url)).new_page()
    await page.goto("/")
    assert page.url.endswith("/sign-in")  # nothing before signing in
    await page.get_by_label("Account name").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(console.url)
    return page


async def shown(page: Page, screenshots: Path, name: str) -> str:
    """The page's HTML, after a full-page screenshot and a check for personal data."""
    await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    html = await page.content()
    for value in SHOWN_NOWHERE:
        assert value not in html, f"{value!r} shown on {name}"
    return html


async def test_an_operator_finds_probations_overdue_request_and_opens_its_case(
    browser: Browser, console: Listening, demo_area: DemoArea, screenshots: Path
) -> None:
    page = await signed_in(browser, console, "olive")
    await shown(page, screenshots, "overview")
    assert await page.get_by_role("heading", name="Flows today").is_visible()
    await page.get_by_role("link", name="Deadlines").click()
    await shown(page, screenshots, "deadlines")
    breached = page.get_by_role("table").filter(has_text="probation").last
    row = breached.get_by_role("row").filter(has_text="probation")
    assert await row.get_by_role("cell", name="Amber").count() == 1
    assert await row.get_by_role("cell", name="2", exact=True).count() == 1  # level 2 reached
    await row.get_by_role("link", name=demo_area.case).click()
    await page.wait_for_url(lambda url: url.endswith(f"/case?id={demo_area.case}"))
    await shown(page, screenshots, "case")
    heading = page.get_by_role("heading", name="response Amber owed by probation to hub")
    assert "met late" in (await heading.inner_text())
    assert await page.get_by_text("escalated level 2").count() == 1
    await page.get_by_role("link", name="Keys and agreements").click()
    await shown(page, screenshots, "keys")
    await page.get_by_role("link", name="Operator audit").click()
    html = await shown(page, screenshots, "audit")
    assert "olive" in html and "sign-in" in html


async def test_an_operator_releases_a_message_once_its_agreement_is_added(
    browser: Browser, quarantined: Quarantined, screenshots: Path
) -> None:
    exchange, entry_id = quarantined.exchange, quarantined.entry_id
    async with console_on(quarantined.config) as listening:
        page = await signed_in(browser, listening, "olive")
        await page.get_by_role("link", name="Quarantine", exact=True).click()
        await shown(page, screenshots, "quarantine")
        row = page.get_by_role("row").filter(has_text=entry_id)
        assert await row.get_by_role("cell", name="policy", exact=True).count() == 1
        reason = "no agreement lets police send Referral to education"
        assert await row.get_by_role("cell", name=reason).count() == 1
        await row.get_by_role("link", name=entry_id).click()
        await shown(page, screenshots, "quarantine-entry")
        assert await page.get_by_text("rejected", exact=True).count() == 1  # tracked state

        await add_agreement(exchange)  # the fix, in gateway.toml, and the router re-reads it
        await page.get_by_role("link", name="Release…").click()
        await shown(page, screenshots, "quarantine-release")
        await page.get_by_role("button", name=f"Release {entry_id}").click()
        await page.wait_for_url(lambda url: url.endswith(f"/quarantine/entry?id={entry_id}"))

        async def delivered() -> bool:
            return len(exchange.inboxes["education"].of_type("Referral")) == 1

        await eventually(delivered)
        (got,) = exchange.inboxes["education"].of_type("Referral")
        assert got.header.fields.message_id == quarantined.message_id  # the same message
        await page.reload()
        await shown(page, screenshots, "quarantine-released")
        assert await page.get_by_text("by olive").count() == 1
        assert await page.get_by_role("link", name="Release…").count() == 0  # settled

        await page.get_by_role("link", name="Operator audit").click()
        await shown(page, screenshots, "audit-release")
        record = page.get_by_role("row").filter(has_text="quarantine released")
        assert await record.get_by_role("cell", name="olive", exact=True).count() == 1
        assert await record.get_by_role("cell", name=quarantined.message_id).count() == 1


async def test_a_viewer_cannot_release_a_quarantined_message(
    browser: Browser, quarantined: Quarantined, screenshots: Path
) -> None:
    entry_id = quarantined.entry_id
    async with console_on(quarantined.config) as listening:
        page = await signed_in(browser, listening, "victor")
        await page.goto(f"/quarantine/entry?id={entry_id}")
        await shown(page, screenshots, "quarantine-entry-viewer")
        assert await page.get_by_role("link", name="Release…").count() == 0
        assert await page.get_by_role("link", name="Discard…").count() == 0
        refused = await page.goto(f"/quarantine/release?id={entry_id}")
        assert refused is not None and refused.status == 403
        # A forged form with the viewer's own valid CSRF token: the role still refuses it.
        await page.goto("/quarantine")
        token = await page.locator("form.find input[name=csrf]").get_attribute("value")
        assert token is not None
        posted = await page.request.post(
            "/quarantine/release", form={"id": entry_id, "csrf": token}
        )
        assert posted.status == 403
        await page.goto(f"/quarantine/entry?id={entry_id}")
        assert await page.get_by_text("held", exact=True).count() == 1


async def test_a_viewer_sees_no_operator_actions(
    browser: Browser, console: Listening, screenshots: Path
) -> None:
    page = await signed_in(browser, console, "victor")
    await shown(page, screenshots, "overview-viewer")
    assert await page.get_by_role("link", name="Operator audit").count() == 0
    assert await page.get_by_text("victor (viewer)").is_visible()
    response = await page.goto("/audit")
    assert response is not None and response.status == 403


async def test_a_form_without_its_csrf_token_is_refused(
    browser: Browser, console: Listening, demo_area: DemoArea
) -> None:
    page = await signed_in(browser, console, "olive")
    # The CSP forbids page scripts; Playwright's own evaluation stands in for a forged form.
    await page.evaluate("document.querySelector('form.find input[name=csrf]').remove()")
    await page.get_by_label("Case or message id").fill(demo_area.case)
    async with page.expect_response(lambda r: r.url.endswith("/cases")) as answer:
        await page.get_by_role("button", name="Open case").click()
    assert (await answer.value).status == 403
    await page.goto("/")
    await page.get_by_label("Case or message id").fill(demo_area.case)
    await page.get_by_role("button", name="Open case").click()
    await page.wait_for_url(
        lambda url: url.endswith(f"/case?id={demo_area.case}")
    )  # with its token, the same form works


async def test_axe_finds_no_serious_accessibility_problem_on_any_page(
    browser: Browser, console: Listening, demo_area: DemoArea, quarantined: Quarantined
) -> None:
    axe = Axe()
    anonymous = await (await browser.new_context(base_url=console.url)).new_page()
    await anonymous.goto("/sign-in")
    pages = {"/sign-in": anonymous}
    page = await signed_in(browser, console, "olive")
    found = {}
    for path, on in pages.items():
        found[path] = (await axe.run(on)).response["violations"]
    for path in ("/", "/deadlines", f"/case?id={demo_area.case}", "/keys", "/audit"):
        await page.goto(path)
        found[path] = (await axe.run(page)).response["violations"]
    async with console_on(quarantined.config) as listening:
        page = await signed_in(browser, listening, "olive")
        entry = quarantined.entry_id
        for path in (
            "/quarantine",
            f"/quarantine/entry?id={entry}",
            f"/quarantine/release?id={entry}",
            f"/quarantine/discard?id={entry}",
        ):
            await page.goto(path)
            found[path] = (await axe.run(page)).response["violations"]
    serious = {
        path: [(v["id"], v["impact"], v["help"]) for v in violations if v["impact"] in SERIOUS]
        for path, violations in found.items()
    }
    assert all(not problems for problems in serious.values()), serious
