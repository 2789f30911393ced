"""The quality report: its data reflects the warehouse, the page is self-contained, and the
asset writes it and links it in its metadata."""

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from annotation_assets.core import drift
from annotation_assets.core.spec import TaskSpec, load_task_spec, parse_task_spec
from annotation_assets.home import Home
from annotation_assets.report.data import NO_HUMANS, NO_OVERLAP, PLOTS, SECTIONS, ReportData
from annotation_assets.report.figures import plot_pngs, plot_pngs_at
from annotation_assets.report.markdown import key_plots_markdown
from annotation_assets.report.queries import collect_report_data
from annotation_assets.report.render import render_report
from annotation_assets.report_assets import build_quality_report_asset
from annotation_assets.review_assets import agreement_summary
from resources import Warehouse
from tests.conftest import BASE_SPEC, review_records
from tests.test_assets import Deployment

TASK = "reviews"


def _deployment(root: Path, encoder: Path, *, humans: bool) -> Deployment:
    home = Home(root / "home").create()
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(yaml.safe_dump(BASE_SPEC))
    deployment = Deployment(home, tasks, encoder)
    deployment.drop("d1", review_records(40))
    deployment.run("d1")
    deployment.drop("d2", review_records(30, offset=40))
    deployment.run("d2")
    if humans:
        _decide(deployment)
        deployment.run("d1")
        deployment.run("d2")
    return deployment


def _decide(deployment: Deployment) -> None:
    """Decisions on every pending record and on a few auto-accepted ones, some of them voted
    by two annotators (one pair disagreeing)."""
    labels = ["negative", "neutral", "positive"]
    pending = deployment.sql(f"SELECT record_id FROM {TASK}.hitl_pending ORDER BY record_id")
    accepted = deployment.sql(
        f"SELECT record_id, label FROM {TASK}.model_labels WHERE accepted ORDER BY record_id"
    )
    rows = [(rid, labels[i % 3], "ann1") for i, (rid,) in enumerate(pending)]
    rows += [(rid, label, "ann1") for rid, label in accepted[:6]]
    rows += [(rid, label, "ann2") for rid, label, _ in rows[:5]]
    rows += [(accepted[6][0], "neutral", "ann2"), (accepted[6][0], "positive", "ann1")]
    with duckdb.connect(str(deployment.home.warehouse)) as conn:
        conn.executemany(
            f"INSERT INTO {TASK}.human_labels VALUES (?, ?, ?, now(), 'test.csv', now())", rows
        )


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Deployment:
    return _deployment(tmp_path_factory.mktemp("reviewed"), tiny_encoder_dir, humans=True)


@pytest.fixture(scope="module")
def unreviewed(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Deployment:
    return _deployment(tmp_path_factory.mktemp("unreviewed"), tiny_encoder_dir, humans=False)


def _spec(deployment: Deployment) -> TaskSpec:
    return load_task_spec(deployment.tasks / f"{TASK}.yaml")


def _spec_in(folder: Path) -> TaskSpec:
    path = folder / f"{TASK}.yaml"
    path.write_text(yaml.safe_dump(BASE_SPEC))
    return load_task_spec(path)


def _data(deployment: Deployment) -> ReportData:
    with duckdb.connect(str(deployment.home.warehouse), read_only=True) as conn:
        return collect_report_data(conn, _spec(deployment), summarize_agreement=agreement_summary)


class _Tables(HTMLParser):
    """Rows of cell texts of every <table id=...> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._current = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._current is not None:
            self._current.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._current is not None:
            self._current[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def _section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, key
    return match.group(1)


def test_report_has_every_section_and_an_inline_png_per_plot(reviewed: Deployment) -> None:
    page = render_report(_data(reviewed))
    for key, heading in SECTIONS.items():
        assert f"<h2>{heading}</h2>" in _section(page, key)
    for plot in PLOTS:
        match = re.search(rf'id="plot-{plot}"><img src="data:image/png;base64,([^"]+)"', page)
        assert match, plot
        assert base64.b64decode(match.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http" not in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page)


def test_summary_per_drop_equals_the_run_counts(reviewed: Deployment) -> None:
    data = _data(reviewed)
    assert data.drops["drop_id"].tolist() == ["d1", "d2"]
    for row in data.drops.itertuples():
        counts = reviewed.counts(row.drop_id)
        assert row.ingested == counts["ingested"]
        assert row.final == counts["final_rows"]
        assert row.pending == counts["hitl_pending"]
        assert row.auto_accepted == counts["auto_accepted"]
        assert row.human == counts["by_source"]["human"]
    assert data.drops["human"].sum() > 0


def test_class_distribution_equals_a_direct_sql_count(reviewed: Deployment) -> None:
    data = _data(reviewed)
    expected = {
        (drop_id, label): n
        for drop_id, label, n in reviewed.sql(
            f"SELECT drop_id, label, count(*) FROM {TASK}.final_dataset GROUP BY ALL"
        )
    }
    assert {
        (d, label): int(n) for (d, label), n in data.class_counts.stack().items() if n
    } == expected
    table = _tables(render_report(data))["class-distribution-before"]
    header, rows = table[0], {r[0]: r for r in table[1:]}
    for (drop_id, label), n in expected.items():
        assert rows[drop_id][header.index(label)] == str(n)
    total = sum(expected.values())
    assert rows["overall"][header.index("total")] == f"{total:,}"


def test_drift_is_the_psi_of_each_drop_against_the_earlier_ones(reviewed: Deployment) -> None:
    data = _data(reviewed)
    counts = dict(
        ((d, label), n)
        for d, label, n in reviewed.sql(
            f"SELECT drop_id, label, count(*) FROM {TASK}.final_dataset GROUP BY ALL"
        )
    )
    first = {label: n for (d, label), n in counts.items() if d == "d1"}
    second = {label: n for (d, label), n in counts.items() if d == "d2"}
    psi = drift.population_stability_index(first, second, labels=data.labels)
    assert [r["drop_id"] for r in data.drift] == ["d1", "d2"]
    assert data.drift[0]["psi"] is None
    assert data.drift[1]["psi"] == pytest.approx(psi)


def test_rule_coverage_and_accuracy_come_from_fired_rules_and_human_decisions(
    reviewed: Deployment,
) -> None:
    data = _data(reviewed)
    total = reviewed.sql(f"SELECT count(*) FROM {TASK}.rule_labels")[0][0]
    for row in data.rules:
        (fired,) = reviewed.sql(
            f"SELECT count(*) FROM {TASK}.rule_labels WHERE list_contains(rules_fired, ?)",
            row["rule"],
        )[0]
        assert row["fired"] == fired
        assert row["coverage"] == pytest.approx(fired / total)
    assert any(row["n_gold"] > 0 and row["accuracy"] is not None for row in data.rules)


def test_calibration_uses_model_scored_human_decided_records(reviewed: Deployment) -> None:
    data = _data(reviewed)
    assert data.calibration_n > 0
    assert sum(r["count"] for r in data.calibration) == data.calibration_n
    assert data.calibration_ece is not None
    accuracy = [r["accuracy"] for r in data.what_if if r["accuracy"] is not None]
    assert accuracy, "the what-if curve has accuracy once people decided records"
    assert data.agreement is not None
    assert data.agreement["records_with_2plus_votes"] == 6
    assert data.agreement["krippendorff_alpha"] is not None


def test_without_human_decisions_the_calibration_section_says_so(unreviewed: Deployment) -> None:
    data = _data(unreviewed)
    page = render_report(data)
    calibration = _section(page, "calibration")
    assert NO_HUMANS in calibration
    assert 'id="plot-calibration"' not in calibration
    assert data.model is not None and data.model["version"] in calibration
    assert NO_OVERLAP in _section(page, "agreement")
    assert 'id="plot-threshold_what_if"' in page


def test_plots_drawn_once_are_saved_at_each_resolution(reviewed: Deployment) -> None:
    import struct

    data = _data(reviewed)
    both = plot_pngs_at(data, (100, 60))
    assert set(both[100]) == set(both[60]) == set(plot_pngs(data, dpi=60)) == set(PLOTS)

    def width(png: str) -> int:
        return int(struct.unpack(">I", base64.b64decode(png)[16:20])[0])

    for name in PLOTS:  # the same figure: 60/100 of the width, within a pixel of rounding
        assert abs(width(both[60][name]) - width(both[100][name]) * 0.6) <= 1
    assert render_report(data, both[100]) == render_report(data, plot_pngs(data))


def test_an_empty_warehouse_still_renders_every_section(tmp_path: Path) -> None:
    spec = _spec_in(tmp_path)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(TASK)
    with warehouse.connect() as conn:
        data = collect_report_data(conn, spec, summarize_agreement=agreement_summary)
    page = render_report(data)
    for key, heading in SECTIONS.items():
        assert f"<h2>{heading}</h2>" in _section(page, key)
    assert "no drops yet" in _section(page, "summary")
    assert NO_OVERLAP in _section(page, "agreement")
    assert "data:image/png" not in page
    assert key_plots_markdown(data)["summary"]


def test_after_balancing_follows_the_specs_balance_settings(reviewed: Deployment) -> None:
    spec = parse_task_spec({**BASE_SPEC, "balance": {"mode": "downsample", "max_ratio": 1}})
    with duckdb.connect(str(reviewed.home.warehouse), read_only=True) as conn:
        data = collect_report_data(conn, spec)
    before, after = data.class_counts.sum(), data.balanced_counts.sum()
    assert before.max() > before.min() > 0
    assert after.to_dict() == dict.fromkeys(before.index, before.min())
    assert "mode downsample, max_ratio 1" in data.balancing
    table = _tables(render_report(data))["class-distribution-after"]
    overall = next(r for r in table if r[0] == "overall")
    assert overall[1:4] == [str(before.min())] * 3


def test_asset_writes_the_report_and_links_it_in_metadata(reviewed: Deployment) -> None:
    asset = build_quality_report_asset(_spec(reviewed), reviewed.home)
    result = dg.materialize(
        [asset],
        resources={"warehouse": Warehouse(path=str(reviewed.home.warehouse))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta: dict[str, Any] = {
        k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()
    }
    path = reviewed.home.exports / TASK / "quality_report.html"
    assert meta["report_path"] == str(path)
    assert meta["report_url"] == path.resolve().as_uri()
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert meta["final_rows"] == reviewed.sql(f"SELECT count(*) FROM {TASK}.final_dataset")[0][0]
    assert meta["model_version"]
    assert "data:image/png;base64," in meta["stage_share"]
    for name in ("summary", "class_distribution", "calibration", "threshold_what_if"):
        assert len(meta[name].encode()) < 200_000, name
    assert not list(path.parent.glob(".*.tmp"))
    assert 0 < meta["review_rate"] <= 1
