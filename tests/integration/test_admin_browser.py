"""The admin page in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright against the app served by uvicorn on a free port. Nothing is downloaded: the
browser is the system's, launched by path.

Screenshots go to ``$WIJKBRUG_SCREENSHOTS`` when set (to look at the page), else to the
test's temporary directory.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bridge.config import generate_config, load_settings
from bridge.homeserver import free_port
from bridge.store import Store
from bridge.web.app import create_app
from tests.support.examples import region

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@dataclass
class Site:
    url: str
    store: Store
    shots: Path

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The bridge's web app (no homeserver, no workers) on a free port, with a region."""
    port = free_port()
    settings = load_settings(generate_config(tmp_path / "data", port=port))
    app = create_app(settings, run_bridge=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="admin-page-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    store: Store = app.state.bridge.store
    region(store)  # Thuiszorg Oost (12345678), its team, wondzorg in 1091-1098
    store.add_wijk("Watergraafsmeer", [(1091, 1098)])
    shots = Path(os.environ.get("WIJKBRUG_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield Site(f"http://127.0.0.1:{port}", store, shots)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="nl-NL")
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page: Page, site: Site, token: str) -> None:
    page.goto(f"{site.url}/admin")
    expect(page.get_by_role("heading", name="Inloggen")).to_be_visible()
    page.get_by_label("Beheertoken").fill(token)
    page.get_by_role("button", name="Inloggen").click()
    expect(page.get_by_text("Ingelogd als")).to_be_visible()


def gap_cells(page: Page, care_type: str) -> int:
    return page.locator(f'#coverage td[data-care-type="{care_type}"][data-gap]').count()


def test_region_admin_adds_a_route_and_the_gap_disappears(page: Page, site: Site) -> None:
    _, token = site.store.add_admin_token("Anna de Vries", "region-admin")
    page.goto(f"{site.url}/admin")
    site.shot(page, "01-login")
    page.get_by_label("Beheertoken").fill("wba_wrong")
    page.get_by_role("button", name="Inloggen").click()
    expect(page.get_by_role("alert")).to_contain_text("Onbekend of ingetrokken beheertoken")

    log_in(page, site, token)
    # 1091-1098 has only wondzorg: 8 PC4s x 5 other care types.
    expect(page.locator("#gap-count")).to_have_text("40 gat(en)")
    assert gap_cells(page, "wijkverpleging") == 1
    assert gap_cells(page, "wondzorg") == 0
    site.shot(page, "02-dashboard")

    form = page.locator("#route-form")
    form.get_by_label("Zorgsoort").select_option("wijkverpleging")
    form.get_by_label("PC4 of bereik").fill("1091-1098")
    form.get_by_label("Aanbieder").select_option("12345678")
    form.get_by_role("button", name="Route toevoegen").click()

    expect(page.get_by_role("status")).to_have_text(re.compile(r"Route #\d+ is toegevoegd\."))
    assert gap_cells(page, "wijkverpleging") == 0
    expect(page.locator("#gap-count")).to_have_text("32 gat(en)")
    row = page.locator("#route-table tbody tr", has_text="Wijkverpleging")
    expect(row).to_contain_text("1091–1098")
    expect(row).to_contain_text("Thuiszorg Oost")
    expect(page.locator("#change-table tbody tr").first).to_contain_text("admin:Anna de Vries")
    site.shot(page, "03-route-added")

    # The route can be removed again from its row; the gap comes back.
    row.get_by_role("button", name=re.compile("verwijderen")).click()
    expect(page.get_by_role("status")).to_contain_text("is verwijderd")
    assert gap_cells(page, "wijkverpleging") == 1


def test_a_bad_pc4_names_the_field_and_keeps_the_input(page: Page, site: Site) -> None:
    _, token = site.store.add_admin_token("Anna", "region-admin")
    log_in(page, site, token)
    form = page.locator("#route-form")
    form.get_by_label("Zorgsoort").select_option("ggz")
    form.get_by_label("PC4 of bereik").fill("10x2")
    form.get_by_label("Rang").fill("2")
    form.get_by_role("button", name="Route toevoegen").click()

    field = page.locator("#route-form").get_by_label("PC4 of bereik")
    expect(page.locator("#route-pc4-error")).to_have_text(
        "PC4 of bereik: ‘10x2’ is geen PC4 (1000–9999) of bereik zoals 1091-1098 (van ≤ tot)."
    )
    expect(field).to_have_value("10x2")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(page.locator("#route-form").get_by_label("Zorgsoort")).to_have_value("ggz")
    expect(page.locator("#route-form").get_by_label("Rang")).to_have_value("2")
    site.shot(page, "04-bad-pc4")
    assert len(site.store.route_rules()) == 1


def test_coordinator_is_refused_outside_their_wijk_and_logs_out(page: Page, site: Site) -> None:
    site.store.add_wijk("Oost", [(1051, 1054)])
    _, token = site.store.add_admin_token("Bram", "wijk-coordinator", ["Oost"])
    log_in(page, site, token)
    expect(page.locator("#team-form")).to_have_count(0)  # teams are the organisations' work
    # The region's route lies outside Oost: no remove button for it.
    expect(page.locator("#route-table").get_by_role("button")).to_have_count(0)
    form = page.locator("#route-form")
    form.get_by_label("PC4 of bereik").fill("1091")
    form.get_by_role("button", name="Route toevoegen").click()
    expect(page.locator("#route-pc4-error")).to_contain_text("niet toegestaan voor jouw rol")
    expect(page.locator("#route-pc4-error")).to_contain_text("ligt buiten jouw wijken (Oost)")
    expect(page.locator("#change-table tbody tr").first).to_contain_text("denied:route.add")
    site.shot(page, "05-coordinator-refused")

    page.get_by_role("button", name="Uitloggen").click()
    expect(page.get_by_text("Je bent uitgelogd.")).to_be_visible()
    page.goto(f"{site.url}/admin")
    expect(page.get_by_label("Beheertoken")).to_be_visible()


def test_org_admin_marks_their_provider_full_and_clears_it(page: Page, site: Site) -> None:
    _, token = site.store.add_admin_token("Carla", "org-admin", ["12345678"])
    log_in(page, site, token)
    expect(page.locator("#route-form")).to_have_count(0)
    form = page.locator("#full-form")
    form.get_by_label("Zorgsoort").select_option("wondzorg")
    form.get_by_label("Vol tot en met").fill("2099-12-31")
    form.get_by_label("Toelichting").fill("zomerdrukte")
    form.get_by_role("button", name="Vol melden").click()
    expect(page.get_by_role("status")).to_contain_text("is vastgelegd")
    expect(page.locator("#availability-table")).to_contain_text("zomerdrukte")
    assert gap_cells(page, "wondzorg") == 1  # the only wondzorg provider is full
    site.shot(page, "06-full")
    page.locator("#availability-table").get_by_role("button", name="Opheffen").click()
    expect(page.get_by_role("status")).to_contain_text("is opgeheven")
    assert gap_cells(page, "wondzorg") == 0


def test_the_page_works_with_javascript_off(browser: Browser, site: Site) -> None:
    """Forms and tables need no JavaScript: log in and add a route with it disabled."""
    _, token = site.store.add_admin_token("Zonder JS", "region-admin")
    context = browser.new_context(java_script_enabled=False, locale="nl-NL")
    try:
        page = context.new_page()
        log_in(page, site, token)
        form = page.locator("#route-form")
        form.get_by_label("Zorgsoort").select_option("ggz")
        form.get_by_label("PC4 of bereik").fill("1091")
        form.get_by_label("Aanbieder").select_option("12345678")
        form.get_by_role("button", name="Route toevoegen").click()
        expect(page.get_by_role("status")).to_have_text(re.compile(r"Route #\d+ is toegevoegd\."))
        row = page.locator("#route-table tbody tr", has_text="GGZ")
        expect(row).to_contain_text("Thuiszorg Oost")
    finally:
        context.close()
