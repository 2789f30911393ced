"""`annotate review export / import` end to end, in subprocesses, per the CLI contract."""

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resources import Warehouse
from tests.cli import Cli
from tests.conftest import review_records, write_jsonl

TASK = "reviews"
IMPORT_KEYS = {"task", "file", "rows", "imported", "already_imported", "errors"}


@pytest.fixture
def cli(tmp_path: Path, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path) -> Cli:
    return Cli(tmp_path / "home", tasks_dir(), tiny_encoder_dir)


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def _stderr_lines(p: Any) -> list[str]:
    return [line for line in p.stderr.strip().splitlines() if line.strip()]


def _failed_in_one_line(p: Any) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = _stderr_lines(p)
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_review_round_trip_decides_every_queued_record(cli: Cli, tmp_path: Path) -> None:
    drop = tmp_path / "in" / "drop-0001"
    write_jsonl(drop, review_records(30))
    run = cli("run", TASK, "--drop", str(drop))
    assert run.returncode == 0, run.stderr
    pending = _last_json(run.stdout)["hitl_pending"]
    assert pending > 0

    queue_csv = tmp_path / "queue.csv"
    p = cli("review", "export", TASK, "--out", str(queue_csv), "--format", "csv")
    assert p.returncode == 0, p.stderr
    assert _last_json(p.stdout)["records"] == pending
    with open(queue_csv, newline="", encoding="utf-8") as fh:
        queue = list(csv.DictReader(fh))
    assert list(queue[0])[:4] == ["record_id", "text", "suggested_label", "confidence"]
    assert len(queue) == pending

    queue_json = tmp_path / "ls" / "queue.json"
    p = cli("review", "export", TASK, "--out", str(queue_json), "--format", "label-studio")
    assert p.returncode == 0, p.stderr
    config = tmp_path / "ls" / "queue.label_config.xml"
    assert _last_json(p.stdout)["files"] == [str(queue_json), str(config)]
    tasks = json.loads(queue_json.read_text(encoding="utf-8"))
    assert [t["data"]["record_id"] for t in tasks] == [r["record_id"] for r in queue]
    choices = ET.fromstring(config.read_text(encoding="utf-8")).find("Choices")
    assert choices is not None and choices.get("name") == "label"

    decisions = tmp_path / "decisions.csv"
    with open(decisions, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "label", "annotator"])
        for row in queue:
            writer.writerow([row["record_id"], row["suggested_label"] or "neutral", "alice"])
    p = cli("review", "import", TASK, str(decisions))
    assert p.returncode == 0, p.stderr
    summary = _last_json(p.stdout)
    assert set(summary) >= IMPORT_KEYS
    assert summary["rows"] == pending
    assert summary["imported"] == summary["rows"]
    assert summary["errors"] == 0
    assert summary["decided"] == pending
    assert summary["rescored_drops"] == 1
    assert list((cli.home / "reviews" / TASK).glob("*decisions.csv"))

    out = tmp_path / "out"
    p = cli("export", TASK, "--out", str(out))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (out / f"{TASK}.jsonl").read_text().splitlines()]
    human = {r["id"]: r for r in rows if r["source"] == "human"}
    assert set(human) == {r["record_id"] for r in queue}
    for row in queue:
        assert human[row["record_id"]]["label"] == (row["suggested_label"] or "neutral")

    p = cli("review", "import", TASK, str(decisions))
    assert p.returncode == 0, p.stderr
    again = _last_json(p.stdout)
    assert again["imported"] == 0
    assert again["already_imported"] == summary["rows"]
    assert again["errors"] == 0
    assert again["decided"] == pending


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_an_annotator_going_back_to_an_earlier_label_through_the_cli_ends_there(
    cli: Cli, tmp_path: Path
) -> None:
    drop = tmp_path / "in" / "drop-0001"
    write_jsonl(drop, review_records(30))
    assert cli("run", TASK, "--drop", str(drop)).returncode == 0
    queue = tmp_path / "queue.csv"
    assert cli("review", "export", TASK, "--out", str(queue)).returncode == 0
    record = next(csv.DictReader(queue.open(encoding="utf-8")))["record_id"]
    decisions = tmp_path / "v.csv"  # one file, edited between imports
    counts = []
    folder = cli.home / "reviews" / TASK
    for i, label in enumerate(["negative", "positive", "negative", "negative"]):
        decisions.write_text(f"record_id,label,annotator\n{record},{label},alice\n")
        p = cli("review", "import", TASK, str(decisions))
        assert p.returncode == 0, p.stderr
        counts.append((_last_json(p.stdout)["imported"], _last_json(p.stdout)["already_imported"]))
        if i == 0:  # as if the import had been killed before it kept its copy
            (kept_first,) = folder.iterdir()
            kept_first.unlink()
    assert counts == [(1, 0), (1, 0), (1, 0), (0, 1)]  # the last one repeats her current vote
    kept = sorted(p.name for p in folder.iterdir())
    assert len(kept) == 3 and sum(name.endswith("-2-v.csv") for name in kept) == 1
    assert kept_first.exists()  # completed by the third import, which then arrived as -2
    out = tmp_path / "out"
    assert cli("export", TASK, "--out", str(out)).returncode == 0
    rows = [json.loads(line) for line in (out / f"{TASK}.jsonl").read_text().splitlines()]
    assert [(r["label"], r["source"]) for r in rows if r["id"] == record] == [("negative", "human")]


def test_a_file_of_only_bad_rows_is_refused_row_by_row(cli: Cli, tmp_path: Path) -> None:
    # a warehouse with the task's (empty) tables: every record id is unknown
    Warehouse(path=str(cli.home / "warehouse.duckdb")).ensure_task(TASK)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "record_id,label,annotator\nghost1,positive,a\nghost2,positive,a\n,neutral,a\n",
        encoding="utf-8",
    )
    p = cli("review", "import", TASK, str(bad))
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = _stderr_lines(p)
    assert len(lines) == 4, p.stderr
    assert "line 2" in lines[0] and "ghost1" in lines[0]
    assert "line 3" in lines[1] and "ghost2" in lines[1]
    assert "line 4" in lines[2] and "missing record_id" in lines[2]
    assert "no valid decisions" in lines[3]
    assert not list((cli.home / "reviews").rglob("*bad.csv"))


def test_a_malformed_decisions_file_is_refused_in_one_line(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "export.json"
    broken.write_text('[{"data": {"record_id": "r1"}, "annotations": [', encoding="utf-8")
    line = _failed_in_one_line(cli("review", "import", TASK, str(broken)))
    assert "export.json" in line and "not valid JSON" in line


def test_review_commands_before_any_run_are_refused(cli: Cli, tmp_path: Path) -> None:
    line = _failed_in_one_line(cli("review", "export", TASK, "--out", str(tmp_path / "q.json")))
    assert "run a drop first" in line
    assert not (tmp_path / "q.json").exists()
    decisions = tmp_path / "d.csv"
    decisions.write_text("record_id,label,annotator\nr1,positive,a\n", encoding="utf-8")
    line = _failed_in_one_line(cli("review", "import", TASK, str(decisions)))
    assert "run a drop first" in line
