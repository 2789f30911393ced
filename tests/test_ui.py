"""The Dagster UI in a real browser: `dagster dev` on a demo home, opened in Debian's Chromium
through Playwright.

Screenshots go to $TEST_ARTIFACTS (default tests/artifacts/), one per test, taken also when
the test fails. With UPDATE_DOCS_SCREENSHOTS=1 docs/images/asset_graph.png (shown in the README
and docs/ui.md) is rewritten too."""

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from annotation_assets.home import PROJECT_ROOT
from tests.ui_server import DagsterDev, DemoHome, build_demo_home

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
expect = sync_api.expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

TASK = "product_reviews"
STAGE_ASSETS = (
    "raw_records",
    "normalized_records",
    "rule_labels",
    "model_labels",
    "heavy_labels",
    "hitl_pending",
    "final_dataset",
)
FINAL_DATASET_CHECKS = ("rows_conserved", "unique_ids", "schema", "class_balance", "label_drift")
PREVIEW_COLUMNS = ["id", "text", "label", "source", "confidence"]
SELECTION = quote(f'key:"{TASK}/*"', safe="")  # the task's assets only
LINEAGE = f"/asset-groups~{SELECTION}"  # the lineage graph of that selection
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1600, "height": 1200}
DOCS_IMAGES = PROJECT_ROOT / "docs" / "images"


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> DemoHome:
    """`annotate demo` once for the module, with the tiny encoder to keep it fast."""
    return build_demo_home(tmp_path_factory.mktemp("ui") / "home", tiny_encoder_dir)


@pytest.fixture(scope="module")
def ui(demo_home: DemoHome) -> Iterator[DagsterDev]:
    server = DagsterDev(demo_home.root, demo_home.encoder)
    try:
        yield server.start(timeout=120)
    finally:
        server.stop()
        if server.log_path is not None and server.log_path.exists():
            shutil.copyfile(server.log_path, artifacts_dir() / "dagster_dev.log")


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def welcome_modal(page: "Page") -> Any:
    """The "Join the Dagster community" dialog shown on a first visit (it has a Skip button)."""
    return page.get_by_role("dialog").filter(has=page.get_by_role("button", name="Skip"))


def dismiss_welcome_modal(page: "Page") -> None:
    welcome_modal(page).get_by_role("button", name="Skip").click()
    expect(welcome_modal(page)).to_be_hidden()


def new_context(browser: "Browser", ui: DagsterDev, **options: Any) -> "BrowserContext":
    """A fresh profile on the UI; the welcome modal is dismissed whenever it shows up."""
    context = browser.new_context(**{"base_url": ui.url, "viewport": VIEWPORT, **options})
    context.set_default_timeout(TIMEOUT_MS)
    return context


def open_page(context: "BrowserContext") -> "Page":
    page = context.new_page()
    # Fires before any action or assertion that the modal would block.
    page.add_locator_handler(welcome_modal(page), dismiss_welcome_modal)
    return page


@pytest.fixture(scope="module")
def context(browser: "Browser", ui: DagsterDev) -> Iterator["BrowserContext"]:
    """One profile for the module; its first visit meets (and dismisses) the welcome modal."""
    expect.set_options(timeout=TIMEOUT_MS)
    context = new_context(browser, ui)
    page = context.new_page()
    page.goto("/assets")
    with contextlib.suppress(sync_api.TimeoutError):
        welcome_modal(page).wait_for(state="visible", timeout=15_000)
    if welcome_modal(page).count():
        dismiss_welcome_modal(page)
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.close()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def shot(context: "BrowserContext") -> Iterator[Callable[[str], "Page"]]:
    """shot(name) -> a new page whose screenshot is saved as name when the test ends."""
    taken: list[tuple[Page, str]] = []

    def make(name: str) -> "Page":
        page = open_page(context)
        taken.append((page, name))
        return page

    yield make
    for page, name in taken:
        with contextlib.suppress(sync_api.Error):
            page.screenshot(path=artifacts_dir() / name)
        page.close()


def metadata_row(page: "Page", key: str) -> Any:
    """The row of the materialization's metadata table whose key cell is `key`."""
    return page.locator("tr").filter(has=page.get_by_text(key, exact=True))


def test_catalog_lists_the_stage_assets(shot: Callable[[str], "Page"], demo_home: DemoHome) -> None:
    page = shot("asset_catalog.png")
    page.goto(f"/assets?asset-selection={SELECTION}")
    # Every partitioned asset has one partition per demo drop, all materialized.
    drops = len(demo_home.task_drops(TASK))
    partitions = page.get_by_text(f"{drops} partitions", exact=True)
    expect(partitions.nth(len(STAGE_ASSETS) + 1)).to_be_visible()  # + quarantine, duplicates
    expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
    for asset in (*STAGE_ASSETS, "quarantine", "duplicates", "human_labels"):
        link = page.locator(f'a[href="/assets/{TASK}/{asset}"]')
        expect(link).to_be_visible()
        expect(link).to_contain_text(f"{TASK} / {asset}")
    for stage in ("ingest", "normalize", "rules", "model", "review", "dataset"):
        group = page.locator("a", has_text=re.compile(rf"^{TASK}_{stage}$"))
        expect(group.first).to_be_visible()


def expand_lineage(page: "Page") -> None:
    """Expands every asset group of the lineage graph (shortcut Alt+E, a toggle)."""
    nodes = page.locator("svg foreignObject")
    expect(nodes.first).to_be_visible()
    if not nodes.get_by_text(STAGE_ASSETS[0], exact=True).count():
        page.keyboard.press("Alt+KeyE")
        expect(page).to_have_url(re.compile(r"expanded="))
    for asset in STAGE_ASSETS:
        expect(nodes.get_by_text(asset, exact=True)).to_be_visible()
    # Materialized assets are drawn green once their status has loaded.
    materialized = nodes.locator("[style*='--color-background-green']")
    for asset in STAGE_ASSETS:
        expect(materialized.filter(has_text=re.compile(rf"^{asset}$"))).to_be_visible()


def test_lineage_graph_shows_every_stage(
    shot: Callable[[str], "Page"], browser: "Browser", ui: DagsterDev
) -> None:
    page = shot("asset_graph.png")
    page.goto(LINEAGE)
    expand_lineage(page)
    for asset in ("quarantine", "duplicates", "human_labels"):
        expect(page.locator("svg foreignObject").get_by_text(asset, exact=True)).to_be_visible()

    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = new_context(
            browser, ui, viewport={"width": 1400, "height": 920}, device_scale_factor=1.5
        )
        try:
            page = open_page(docs)
            page.goto(LINEAGE)
            page.get_by_role("button", name="Hide navigation").click()
            page.locator("button:has([aria-label=panel_show_right])").click()  # group sidebar
            expand_lineage(page)
            page.wait_for_timeout(1500)  # the zoom-to-fit animation
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=DOCS_IMAGES / "asset_graph.png")
        finally:
            docs.close()


def test_final_dataset_checks_pass(shot: Callable[[str], "Page"]) -> None:
    page = shot("final_dataset_checks.png")
    page.goto(f"/assets/{TASK}/final_dataset?view=checks")
    heading = page.get_by_text(re.compile(r"^Checks \(\d+\)$"))
    expect(heading).to_be_visible()
    total = int(re.findall(r"\d+", heading.inner_text())[0])
    assert total >= len(FINAL_DATASET_CHECKS)
    for check in FINAL_DATASET_CHECKS:
        expect(page.get_by_title(check, exact=True)).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(total)

    page.get_by_title("rows_conserved", exact=True).click()
    expect(page).to_have_url(re.compile(r"checkDetail=rows_conserved"))
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()


def test_final_dataset_overview_shows_row_count(
    shot: Callable[[str], "Page"], demo_home: DemoHome
) -> None:
    latest = demo_home.task_drops(TASK)[-1]
    page = shot("final_dataset_overview.png")
    page.goto(f"/assets/{TASK}/final_dataset")
    row_count = page.get_by_text("Row count", exact=True).locator("xpath=..")
    expect(row_count).to_have_text(re.compile(rf"^Row count\s*{latest['final_rows']}$"))
    latest_run = page.get_by_text("Latest materialization", exact=True).locator("xpath=..")
    expect(latest_run).to_contain_text(latest["drop"])
    expect(page.get_by_text("Latest check results", exact=True)).to_be_visible()


def test_final_dataset_materialization_metadata(
    shot: Callable[[str], "Page"], demo_home: DemoHome
) -> None:
    latest = demo_home.task_drops(TASK)[-1]  # the demo runs drops in order: the newest event
    page = shot("final_dataset_metadata.png")
    page.goto(f"/assets/{TASK}/final_dataset?view=events")
    expect(page.get_by_text("materialized in run")).to_contain_text(latest["drop"])

    expect(metadata_row(page, "dagster/row_count").locator("td").nth(1)).to_have_text(
        latest["final_rows"]
    )
    by_source = metadata_row(page, "by_source")
    sources = {k[3:]: v for k, v in latest.items() if k.startswith("by_") and int(v)}
    assert sources, latest
    for source, count in sources.items():
        expect(by_source).to_contain_text(f'"{source}": {count}')
    expect(metadata_row(page, "by_label")).to_contain_text('"positive"')
    # A short markdown value is rendered in place: the confidence histogram as a table.
    histogram = metadata_row(page, "confidence_histogram").locator("table")
    expect(histogram).to_be_visible()
    expect(histogram.locator("th").first).to_have_text("bin")

    # The preview table is long, so it opens in a dialog.
    metadata_row(page, "preview").get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog").filter(has_text="preview")
    expect(dialog.locator("table th")).to_have_text(PREVIEW_COLUMNS)
    expect(dialog.locator("table tbody tr")).to_have_count(min(10, int(latest["final_rows"])))
    page.screenshot(path=artifacts_dir() / "final_dataset_preview.png")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
