"""The `annotate` CLI end to end, in subprocesses, per the contract in DESIGN.md."""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.cli import Cli
from tests.conftest import review_records, write_jsonl

SUMMARY_KEYS = {
    "task",
    "drop",
    "ingested",
    "quarantined",
    "duplicates",
    "auto_accepted",
    "hitl_pending",
    "final_rows",
    "by_source",
}


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def cli(tmp_path: Path, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path) -> Cli:
    return Cli(tmp_path / "home", tasks_dir(), tiny_encoder_dir)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "in" / "drop-0001"
    write_jsonl(folder, [*review_records(30), "{broken", json.dumps({"id": "r0", "text": "x"})])
    return folder


def _one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [line for line in p.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_run_prints_the_summary_line_and_conserves_rows(cli: Cli, drop: Path) -> None:
    p = cli("run", "reviews", "--drop", str(drop))
    assert p.returncode == 0, p.stderr
    summary = _last_json(p.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert summary["drop"] == "drop-0001"
    assert summary["ingested"] == 32
    assert summary["ingested"] == (
        summary["final_rows"]
        + summary["hitl_pending"]
        + summary["quarantined"]
        + summary["duplicates"]
    )
    assert set(summary["by_source"]) == {"rule", "model", "heavy", "human"}
    assert (cli.home / "drops" / "reviews" / "drop-0001" / "part-0.jsonl").exists()


def test_rerunning_a_drop_gives_the_same_summary(cli: Cli, drop: Path) -> None:
    first = _last_json(cli("run", "reviews", "--drop", str(drop)).stdout)
    second = _last_json(cli("run", "reviews", "--drop", str(drop)).stdout)
    assert first == second


def test_cli_runs_are_recorded_in_the_homes_dagster_instance(cli: Cli, drop: Path) -> None:
    assert cli("run", "reviews", "--drop", str(drop)).returncode == 0
    instance = dg.DagsterInstance.from_config(str(cli.home / "dagster"))
    runs = {run.job_name: run for run in instance.get_runs()}
    assert set(runs) == {"reviews_pipeline", "reviews_quality_report"}
    assert runs["reviews_pipeline"].tags.get("dagster/partition") == "drop-0001"
    assert instance.get_dynamic_partitions("reviews_drops") == ["drop-0001"]


def test_export_writes_the_contract_jsonl(cli: Cli, drop: Path, tmp_path: Path) -> None:
    summary = _last_json(cli("run", "reviews", "--drop", str(drop)).stdout)
    out = tmp_path / "out"
    p = cli("export", "reviews", "--out", str(out))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (out / "reviews.jsonl").read_text().splitlines()]
    assert len(rows) == summary["final_rows"]
    for row in rows:
        assert {"id", "text", "label", "source", "confidence", "drop_id"} <= set(row)
        assert row["drop_id"] == "drop-0001"
    assert len({r["id"] for r in rows}) == len(rows)
    assert not list(out.glob(".*tmp"))


def test_status_lists_each_drop(cli: Cli, drop: Path) -> None:
    cli("run", "reviews", "--drop", str(drop))
    p = cli("status")
    assert p.returncode == 0
    assert "drop-0001" in p.stdout
    assert cli("status", "reviews").returncode == 0


def test_a_first_run_prints_no_telemetry_notice(cli: Cli, drop: Path) -> None:
    p = cli("run", "reviews", "--drop", str(drop))
    assert p.returncode == 0, p.stderr
    assert "Telemetry" not in p.stderr and "Welcome to Dagster" not in p.stderr
    assert "enabled: false" in (cli.home / "dagster" / "dagster.yaml").read_text()


def test_status_of_a_fresh_home_says_nothing_ran(cli: Cli) -> None:
    p = cli("status")
    assert p.returncode == 0
    assert "no drops" in p.stdout


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_status_with_another_tasks_folder_names_the_tasks_the_warehouse_holds(
    cli: Cli, drop: Path, tmp_path: Path
) -> None:
    cli("run", "reviews", "--drop", str(drop))
    other = tmp_path / "other-tasks"
    other.mkdir()
    spec = (cli.tasks / "reviews.yaml").read_text() if cli.tasks else ""
    (other / "tickets.yaml").write_text(spec.replace("name: reviews", "name: tickets"))
    p = Cli(cli.home, other, None)("status")
    assert p.returncode == 0, p.stderr
    assert "the warehouse also holds tasks reviews" in p.stdout
    # one task of the right folder that has not run: no hint about the folder
    both = tmp_path / "both-tasks"
    both.mkdir()
    (both / "reviews.yaml").write_text(spec)
    (both / "tickets.yaml").write_text(spec.replace("name: reviews", "name: tickets"))
    p = Cli(cli.home, both, None)("status", "tickets")
    assert p.returncode == 0, p.stderr
    assert "no drops of tickets have been run yet" in p.stdout
    assert "also holds" not in p.stdout


@pytest.mark.parametrize("name", ["bad name", "bad$id", "x" * 129])
def test_a_drop_id_outside_the_allowed_characters_is_refused(
    cli: Cli, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "in" / name
    write_jsonl(folder, review_records(2))
    assert "drop id" in _one_line_error(cli("run", "reviews", "--drop", str(folder)))


def test_an_unknown_task_is_refused(cli: Cli, drop: Path) -> None:
    assert "unknown task" in _one_line_error(cli("run", "nosuchtask", "--drop", str(drop)))


def test_a_missing_drop_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    line = _one_line_error(cli("run", "reviews", "--drop", str(tmp_path / "nope")))
    assert "does not exist" in line


def test_a_drop_that_is_a_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "drop.jsonl"
    f.write_text("{}\n")
    assert "not a folder" in _one_line_error(cli("run", "reviews", "--drop", str(f)))


def test_a_malformed_spec_is_reported_in_one_line_naming_file_and_field(
    tmp_path: Path, drop: Path, tiny_encoder_dir: Path
) -> None:
    tasks = tmp_path / "badtasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text(
        "name: t\nkind: text_classification\nlabels: [a, b]\nthresholds: {auto_accept: 3}\n"
    )
    line = _one_line_error(
        Cli(tmp_path / "h", tasks, tiny_encoder_dir)("run", "t", "--drop", str(drop))
    )
    assert "t.yaml" in line and "thresholds.auto_accept" in line


def test_a_broken_spec_takes_out_only_its_own_task(
    tmp_path: Path, drop: Path, tiny_encoder_dir: Path
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "reviews.yaml").write_text(
        "name: reviews\nkind: text_classification\nlabels: [negative, positive]\n"
    )
    (tasks / "t.yaml").write_text("name: t\nkind: text_classification\nlabels: [a]\n")
    cli = Cli(tmp_path / "h", tasks, tiny_encoder_dir)
    # the broken task's own commands fail in one line naming file and field
    line = _one_line_error(cli("status", "t"))
    assert "t.yaml: labels" in line
    # every other task works; the broken file is named once on stderr
    p = cli("run", "reviews", "--drop", str(drop))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["ingested"] > 0
    warned = [line for line in p.stderr.splitlines() if "t.yaml" in line]
    assert len(warned) == 1 and warned[0].endswith("(this task is skipped)")


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_output_paths_that_cannot_be_written_are_refused_in_one_line(
    cli: Cli, drop: Path, tmp_path: Path
) -> None:
    cli("run", "reviews", "--drop", str(drop))
    folder, file = tmp_path / "a-folder", tmp_path / "a-file.csv"
    folder.mkdir()
    file.write_text("x")
    line = _one_line_error(cli("review", "export", "reviews", "--out", str(folder)))
    assert "is a folder" in line
    line = _one_line_error(cli("review", "export", "reviews", "--out", str(file / "q.json")))
    assert "cannot write" in line
    assert "is a file" in _one_line_error(cli("export", "reviews", "--out", str(file)))
    line = _one_line_error(cli("export", "reviews", "--out", str(file / "sub")))
    assert "cannot make the folder" in line
    assert file.read_text() == "x"
    # a folder where the export file goes: refused in one line, no temporary file left
    blocked = tmp_path / "blocked"
    (blocked / "reviews.jsonl").mkdir(parents=True)
    line = _one_line_error(cli("export", "reviews", "--out", str(blocked)))
    assert line == f"annotate: error: cannot write {blocked / 'reviews.jsonl'}: Is a directory"
    assert sorted(p.name for p in blocked.iterdir()) == ["reviews.jsonl"]


@pytest.mark.parametrize("under", [False, True])
@pytest.mark.parametrize("command", [["status"], ["run", "reviews", "--drop", "DROP"]])
def test_a_home_that_is_a_file_or_lies_under_one_is_refused(
    tmp_path: Path, drop: Path, tasks_dir: Callable[..., Path], command: list[str], under: bool
) -> None:
    file = tmp_path / "home-file"
    file.write_text("not a folder")
    home = file / "sub" if under else file
    argv = [str(drop) if a == "DROP" else a for a in command]
    line = _one_line_error(Cli(home, tasks_dir(), None)(*argv))
    assert ("lies under the file" if under else "is a file, not a folder") in line


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_review_export_takes_its_format_from_the_file_name_unless_given(
    cli: Cli, drop: Path, tmp_path: Path
) -> None:
    cli("run", "reviews", "--drop", str(drop))
    assert cli("review", "export", "reviews", "--out", str(tmp_path / "q.csv")).returncode == 0
    assert (tmp_path / "q.csv").read_text().startswith("record_id,text,suggested_label")
    assert cli("review", "export", "reviews", "--out", str(tmp_path / "q.json")).returncode == 0
    assert isinstance(json.loads((tmp_path / "q.json").read_text()), list)
    p = cli(
        "review", "export", "reviews", "--out", str(tmp_path / "x.csv"), "--format", "label-studio"
    )
    assert p.returncode == 0 and isinstance(json.loads((tmp_path / "x.csv").read_text()), list)


def test_an_empty_drop_runs_with_zero_counts_and_a_note(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "in" / "empty-drop"
    empty.mkdir(parents=True)
    (empty / ".DS_Store").write_text("x")
    p = cli("run", "reviews", "--drop", str(empty))
    assert p.returncode == 0, p.stderr
    summary = _last_json(p.stdout)
    assert (summary["ingested"], summary["final_rows"]) == (0, 0)
    assert "drop empty-drop holds no files" in p.stderr


def test_export_before_any_run_is_refused(cli: Cli, tmp_path: Path) -> None:
    assert "run a drop first" in _one_line_error(cli("export", "reviews", "--out", str(tmp_path)))


def test_demo_runs_offline_on_the_bundled_data_with_the_real_encoder(tmp_path: Path) -> None:
    p = Cli(tmp_path / "home", None, None)("demo")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "dagster dev" in p.stdout
    total = _last_json(p.stdout)
    assert total["task"] == "product_images,product_reviews"
    assert total["drops"] == 5
    assert "no CLIP weights" in p.stderr
    assert (tmp_path / "home" / "exports" / "product_reviews" / "quality_report.html").exists()
    assert total["ingested"] == (
        total["final_rows"] + total["hitl_pending"] + total["quarantined"] + total["duplicates"]
    )
    assert total["quarantined"] >= 5
    assert total["duplicates"] >= 5
    assert total["final_rows"] > total["hitl_pending"]
