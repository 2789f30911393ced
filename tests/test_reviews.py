"""The human review loop in process: the queue going out (Label Studio tasks, CSV), decision
files coming back (parsing, validation, idempotent import), reconciliation through the
pipeline, and the human_labels asset, its agreement check and the review sensors."""

import csv
import io
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from annotation_assets.core import reconcile, reviews
from annotation_assets.core.reviews import ReviewFileError, parse_decisions
from annotation_assets.core.spec import TaskSpec
from annotation_assets.home import Home
from annotation_assets.project import build_definitions
from annotation_assets.stages import human
from annotation_assets.stages.dataset import build_final_dataset
from annotation_assets.stages.review import queue_for_review
from annotation_assets.warehouse.counts import drop_counts
from annotation_assets.warehouse.decisions import human_decisions
from resources import Warehouse
from tests.conftest import BASE_SPEC, make_spec, review_records
from tests.test_assets import Deployment

TASK = "reviews"
REVIEW = {"annotators_per_record": 2, "adjudicators": ["lead"]}
SPEC: TaskSpec = make_spec(review=REVIEW)
QUEUE_HEADER = ["record_id", "text", "suggested_label", "confidence", "drop_id", "reason"]


# ---------------------------------------------------------------------------------- fixtures


def _write_tasks(folder: Path, **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(json.dumps(BASE_SPEC))
    data["review"] = dict(REVIEW)
    data.update(overrides)
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(data))
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """One pipeline run (40 records, one drop) whose warehouse every test gets a copy of."""
    root = tmp_path_factory.mktemp("review-template")
    deployment = Deployment(
        Home(root / "home").create(), _write_tasks(root / "tasks"), tiny_encoder_dir
    )
    deployment.drop("d1", review_records(40))
    assert deployment.run("d1").success
    pending = deployment.sql(f"SELECT count(*) FROM {TASK}.hitl_pending")[0][0]
    assert pending >= 8, "the template needs a review queue to test with"
    return deployment.home.warehouse


@pytest.fixture
def home(tmp_path: Path, template: Path) -> Home:
    """A fresh home holding a copy of the template's warehouse."""
    home = Home(tmp_path / "home").create()
    shutil.copyfile(template, home.warehouse)
    return home


@pytest.fixture
def warehouse(home: Home) -> Warehouse:
    return Warehouse(path=str(home.warehouse))


@pytest.fixture
def conn(home: Home) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(home.warehouse))
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def deployment(home: Home, tmp_path: Path, tiny_encoder_dir: Path) -> Deployment:
    return Deployment(home, _write_tasks(tmp_path / "tasks"), tiny_encoder_dir)


def _pending(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None, str]]:
    """(record_id, suggested_label, reason) of the pending records, least confident first."""
    return conn.execute(
        f"SELECT record_id, suggested_label, reason FROM {TASK}.hitl_pending"
        " ORDER BY confidence NULLS FIRST, record_id"
    ).fetchall()


def _csv(
    path: Path, rows: list[tuple[str, ...]], header: str = "record_id,label,annotator"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return path


def _json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def _import(
    conn: duckdb.DuckDBPyConnection, path: Path, spec: TaskSpec = SPEC
) -> human.ImportReport:
    return human.import_decisions(conn, spec, parse_decisions(path), source_file=path.name)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _no_suggestion(conn: duckdb.DuckDBPyConnection, record_id: str) -> None:
    """Makes a pending record look like one no stage had a label for (as the cascade writes)."""
    conn.execute(
        f"UPDATE {TASK}.hitl_pending SET suggested_label = NULL, confidence = 0.0,"
        " suggested_by = NULL, reason = 'no_suggestion'"
        " WHERE record_id = ?",
        [record_id],
    )


def _contest(tmp_path: Path, record_id: str, warehouse: Warehouse) -> None:
    """Two disagreeing votes on a record, then the drop's queue rebuilt."""
    with warehouse.connect() as c:
        _import(
            c,
            _csv(
                tmp_path / "contest.csv",
                [(record_id, "positive", "alice"), (record_id, "negative", "bob")],
            ),
        )
    queue_for_review(warehouse.connect, SPEC, "d1")


# ------------------------------------------------------------------------------- queue out


def test_queue_puts_the_least_confident_first_and_records_without_suggestion_before_all(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    pending = _pending(conn)
    _no_suggestion(conn, pending[-1][0])
    queue = human.review_queue(conn, SPEC)
    assert len(queue) == len(pending)
    assert queue["record_id"].iloc[0] == pending[-1][0]
    confidences = queue["confidence"].iloc[1:].tolist()
    assert confidences == sorted(confidences)
    assert list(queue.columns[:6]) == QUEUE_HEADER


def test_contested_records_come_first_and_are_flagged_for_adjudication(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    with warehouse.connect() as conn:
        record_id = _pending(conn)[-1][0]
    _contest(tmp_path, record_id, warehouse)
    with warehouse.connect() as conn:
        queue = human.review_queue(conn, SPEC)
        votes = human.votes_by_record(conn, TASK)
    assert queue["record_id"].iloc[0] == record_id
    assert queue["reason"].iloc[0] == "contested"
    assert (queue["reason"].iloc[1:] != "contested").all()
    tasks = reviews.label_studio_tasks(queue, votes)
    first = tasks[0]["data"]
    assert first["adjudicate"] is True
    assert first["votes"] in ("negative:1, positive:1", "positive:1, negative:1")
    assert all("adjudicate" not in t["data"] and "votes" not in t["data"] for t in tasks[1:])


def test_stratified_queue_lets_suggested_classes_take_turns(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    plain = human.review_queue(conn, SPEC)
    assert plain["suggested_label"].nunique() >= 2, "need two suggested classes to alternate"
    queue = human.review_queue(conn, SPEC, stratify=True)
    assert sorted(queue["record_id"]) == sorted(plain["record_id"])
    labels = queue["suggested_label"].tolist()
    turns = [labels[: i + 1].count(label) for i, label in enumerate(labels)]
    assert turns == sorted(turns), f"classes do not take turns: {labels}"
    first_round = labels[: queue["suggested_label"].nunique()]
    assert set(first_round) == set(labels)
    for _, group in queue.groupby("suggested_label"):
        assert group["confidence"].tolist() == sorted(group["confidence"].tolist())


def _set_pending(conn: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, float, str]]) -> None:
    """Replaces the queue by (record_id, suggested_label, confidence, reason) rows."""
    conn.execute(f"DELETE FROM {TASK}.hitl_pending")
    conn.executemany(
        f"INSERT INTO {TASK}.hitl_pending VALUES ('d1', ?, 'text ' || ?, ?, ?, 'model', ?, 'm1')",
        [(rid, rid, label, conf, reason) for rid, label, conf, reason in rows],
    )


def test_stratified_queue_keeps_contested_records_first_and_rotates_the_rest(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    _set_pending(
        conn,
        [
            ("c1", "positive", 0.5, "contested"),
            ("p1", "positive", 0.55, "low_confidence"),
            ("p2", "positive", 0.7, "low_confidence"),
            ("n1", "negative", 0.4, "low_confidence"),
            ("n2", "negative", 0.45, "low_confidence"),
            ("n3", "negative", 0.8, "low_confidence"),
        ],
    )
    plain = human.review_queue(conn, SPEC)
    assert plain["record_id"].tolist() == ["c1", "n1", "n2", "p1", "p2", "n3"]
    stratified = human.review_queue(conn, SPEC, stratify=True)
    # the contested record goes to adjudication first; the rest take turns from their start
    assert stratified["record_id"].tolist() == ["c1", "n1", "p1", "n2", "p2", "n3"]
    assert human.review_queue(conn, SPEC, stratify=True, limit=3)["record_id"].tolist() == [
        "c1",
        "n1",
        "p1",
    ]


def test_limit_keeps_the_head_of_the_queue(conn: duckdb.DuckDBPyConnection) -> None:
    full = human.review_queue(conn, SPEC)
    head = human.review_queue(conn, SPEC, limit=3)
    assert head["record_id"].tolist() == full["record_id"].tolist()[:3]
    stratified = human.review_queue(conn, SPEC, stratify=True, limit=2)
    assert len(stratified) == 2
    assert stratified["suggested_label"].nunique() == 2


def test_label_studio_export_matches_its_labeling_config(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    pending = _pending(conn)
    bare, unversioned = pending[0][0], pending[1][0]
    _no_suggestion(conn, bare)
    conn.execute(
        f"UPDATE {TASK}.hitl_pending SET model_version = NULL, suggested_by = 'rule'"
        " WHERE record_id = ?",
        [unversioned],
    )
    queue = human.review_queue(conn, SPEC)
    out = tmp_path / "queue" / "tasks.json"
    written = reviews.write_queue(
        queue, SPEC, human.votes_by_record(conn, TASK), out, "label-studio"
    )
    config_path = tmp_path / "queue" / "tasks.label_config.xml"
    assert written == [out, config_path]

    root = ET.fromstring(config_path.read_text(encoding="utf-8"))
    choices = root.find("Choices")
    text = root.find("Text")
    assert choices is not None and text is not None
    assert choices.get("toName") == text.get("name")
    assert text.get("value") == "$text"
    assert [c.get("value") for c in choices.findall("Choice")] == SPEC.label_names

    tasks = _strict_json(out.read_text(encoding="utf-8"))
    assert isinstance(tasks, list)
    assert len(tasks) == len(pending)
    by_id = {t["data"]["record_id"]: t for t in tasks}
    assert set(by_id) == {p[0] for p in pending}
    for task in tasks:
        assert isinstance(task["data"]["text"], str) and task["data"]["text"]
        if task["data"]["record_id"] == bare:
            assert task["predictions"] == []
            continue
        (prediction,) = task["predictions"]
        assert isinstance(prediction["model_version"], str) and prediction["model_version"]
        assert 0.0 <= prediction["score"] <= 1.0
        (result,) = prediction["result"]
        assert result["type"] == "choices"
        assert result["from_name"] == choices.get("name")
        assert result["to_name"] == choices.get("toName")
        assert result["value"]["choices"][0] in SPEC.label_names
    assert by_id[unversioned]["predictions"][0]["model_version"] == "rule"
    suggested = dict(queue[["record_id", "suggested_label"]].itertuples(index=False))
    for record_id, task in by_id.items():
        if task["predictions"]:
            assert task["predictions"][0]["result"][0]["value"]["choices"] == [suggested[record_id]]


def test_labeling_config_escapes_labels_and_descriptions() -> None:
    spec = make_spec(
        labels={"bad & ugly": 'contains "quotes" <and> tags', "good": ""},
        rules=[],
        examples={},
        description="Reviews <with> & markup",
    )
    root = ET.fromstring(reviews.label_studio_config(spec))
    choices = root.findall("Choices/Choice")
    assert [c.get("value") for c in choices] == ["bad & ugly", "good"]
    assert choices[0].get("hint") == 'contains "quotes" <and> tags'
    assert choices[1].get("hint") is None
    assert root.find("Header").get("value") == "Reviews <with> & markup"  # type: ignore[union-attr]


def test_csv_export_has_the_contract_header(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _no_suggestion(conn, _pending(conn)[0][0])
    queue = human.review_queue(conn, SPEC)
    out = tmp_path / "queue.csv"
    assert reviews.write_queue(queue, SPEC, {}, out, "csv") == [out]
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == QUEUE_HEADER
    assert rows[0][:4] == ["record_id", "text", "suggested_label", "confidence"]
    assert [r[0] for r in rows[1:]] == queue["record_id"].tolist()
    assert rows[1][2] == "" and float(rows[1][3]) == 0.0
    assert not list(tmp_path.glob(".*tmp"))


# ---------------------------------------------------------------------------- parsing files


def _annotation(choices: list[str], who: Any, **extra: Any) -> dict[str, Any]:
    return {
        "completed_by": who,
        "result": [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": choices},
            }
        ],
        **extra,
    }


def test_label_studio_export_gives_one_row_per_annotation(tmp_path: Path) -> None:
    export = [
        {
            "id": 1,
            "data": {"record_id": "r1", "text": "a"},
            "annotations": [
                _annotation(["positive"], 7, updated_at="2026-11-02T10:00:00.5Z"),
                _annotation(
                    ["negative"],
                    {"id": 8, "email": "ann@example.com"},
                    updated_at="2026-11-02T12:00:00+02:00",
                ),
                _annotation(["neutral"], 9, was_cancelled=True),
                {"completed_by": 9, "result": []},
            ],
            "predictions": [],
        },
        {"id": 2, "data": {"record_id": "r2"}, "annotations": [_annotation(["neutral"], 7)]},
        {
            "id": 3,
            "data": {"record_id": "r3"},
            "annotations": [_annotation(["positive", "negative"], 7)],
        },
    ]
    parsed = parse_decisions(_json(tmp_path / "ls.json", export))
    rows = parsed.rows
    assert rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "7"],
        ["r1", "negative", "ann@example.com"],
        ["r2", "neutral", "7"],
    ]
    assert rows["where"].tolist() == ["task 1", "task 1", "task 2"]
    assert rows["decided_at"].iloc[0] == datetime(2026, 11, 2, 10, 0, 0, 500000)
    assert rows["decided_at"].iloc[1] == datetime(2026, 11, 2, 10, 0, 0)
    assert pd.isna(rows["decided_at"].iloc[2])
    assert parsed.skipped == 2
    assert len(parsed.errors) == 1 and parsed.errors[0].startswith("task 3: more than one choice")


def test_label_studio_json_min_export_works(tmp_path: Path) -> None:
    export = [
        {
            "record_id": "r1",
            "text": "a",
            "id": 1,
            "label": "positive",
            "annotator": "a@example.com",
            "annotation_id": 5,
            "updated_at": "2026-11-02T10:00:00Z",
        },
        {"record_id": "r2", "text": "b", "id": 2, "label": "neutral", "annotator": 4},
        {"record_id": "r3", "text": "c", "id": 3},
    ]
    parsed = parse_decisions(_json(tmp_path / "min.json", export))
    assert parsed.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "a@example.com"],
        ["r2", "neutral", "4"],
    ]
    assert parsed.rows["decided_at"].iloc[0] == datetime(2026, 11, 2, 10, 0)
    assert parsed.errors == ["task 3: missing label for record r3"]


def test_malformed_label_studio_tasks_are_row_errors(tmp_path: Path) -> None:
    export = [
        "not a task",
        {"data": {"record_id": "r1"}, "annotations": {"result": []}},
        {
            "data": {"record_id": "r2"},
            "annotations": [_annotation(["positive"], 1, updated_at="?")],
        },
        {"data": {"text": "no id"}, "annotations": [_annotation(["positive"], 1)]},
    ]
    parsed = parse_decisions(_json(tmp_path / "odd.json", export))
    assert parsed.errors == [
        "task 1: not a JSON object",
        "task 2: annotations is not a list",
        "task 4: missing record_id",
    ]
    assert parsed.rows["record_id"].tolist() == ["r2"]
    assert pd.isna(parsed.rows["decided_at"].iloc[0])


def test_choices_that_are_not_a_list_of_labels_are_row_errors(tmp_path: Path) -> None:
    def task(record: str, result: Any) -> dict[str, Any]:
        return {
            "data": {"record_id": record},
            "annotations": [{"completed_by": 1, "result": result}],
        }

    export = [
        task("r1", [{"type": "choices", "value": {"choices": [["positive"]]}}]),
        task("r2", [{"type": "choices", "value": {"choices": "positive"}}]),
        task("r3", {"type": "choices"}),
        task("r4", [{"type": "choices", "value": "positive"}, "junk", None]),
        task("r5", [{"type": "choices", "value": {"choices": ["neutral"]}}]),
    ]
    parsed = parse_decisions(_json(tmp_path / "odd-choices.json", export))
    assert parsed.errors == [
        'task 1: choices must be a list of label strings, got [["positive"]]',
        'task 2: choices must be a list of label strings, got "positive"',
        "task 3: result is a dict, not a list",
    ]
    assert parsed.rows["record_id"].tolist() == ["r5"]
    assert parsed.skipped == 1  # r4: no choice in it


def test_semicolon_csv_decisions_from_a_spreadsheet_are_read(tmp_path: Path) -> None:
    """Spreadsheets in locales with a decimal comma save CSV with semicolons."""
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbfrecord_id;label;annotator\r\nr1;positive;alice\r\nr2;negative;bob\r\n"
    )

    parsed = parse_decisions(path)

    assert parsed.errors == []
    assert parsed.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "alice"],
        ["r2", "negative", "bob"],
    ]


def test_csv_decisions_work_with_and_without_annotator(tmp_path: Path) -> None:
    parsed = parse_decisions(
        _csv(tmp_path / "a.csv", [("r1", "positive", "alice"), ("r2", " negative ", "")])
    )
    assert parsed.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "alice"],
        ["r2", "negative", "csv"],
    ]
    assert parsed.rows["where"].tolist() == ["line 2", "line 3"]
    bare = parse_decisions(_csv(tmp_path / "b.csv", [("r1", "positive")], "record_id,label"))
    assert bare.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "csv"]
    ]
    assert bare.errors == []
    timed = parse_decisions(
        _csv(
            tmp_path / "c.csv",
            [("r1", "positive", "alice", "2026-11-02T10:00:00Z"), ("r2", "neutral", "bob", "")],
            "record_id,label,annotator,decided_at",
        )
    )
    assert timed.rows["decided_at"].iloc[0] == datetime(2026, 11, 2, 10, 0)
    assert pd.isna(timed.rows["decided_at"].iloc[1])


def test_csv_with_a_utf8_bom_works(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfrecord_id,label,annotator\r\nr1,positive,\xc3\xa9lodie\r\n")
    parsed = parse_decisions(path)
    assert parsed.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r1", "positive", "élodie"]
    ]


def test_csv_row_problems_are_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("record_id,label,annotator\n,positive,a\nr2,,a\nr3,positive,a,extra\n")
    parsed = parse_decisions(path)
    assert parsed.rows.empty
    assert parsed.errors == [
        "line 2: missing record_id",
        "line 3: missing label for record r2",
        "line 4: 4 fields, header has 3",
    ]


def test_an_unclosed_quote_costs_its_line_and_the_rows_after_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "unclosed.csv"
    path.write_text(
        'record_id,label,annotator\nr1,positive,"bob\nr2,neutral,alice\nr3,negative,alice\n'
    )
    parsed = parse_decisions(path)
    assert parsed.rows[["record_id", "label", "annotator"]].values.tolist() == [
        ["r2", "neutral", "alice"],
        ["r3", "negative", "alice"],
    ]
    assert parsed.errors == ["line 2: unclosed quote"]


def test_a_quoted_field_may_span_lines_and_short_rows_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        'record_id,label,annotator\nr1,positive,"Bob\nSmith"\nr2,neutral\nr3,negative,alice\n'
    )
    parsed = parse_decisions(path)
    assert parsed.rows[["record_id", "annotator"]].values.tolist() == [
        ["r1", "Bob\nSmith"],
        ["r3", "alice"],
    ]
    assert parsed.errors == ["line 4: 2 fields, header has 3"]


def test_a_decided_at_that_is_not_a_time_costs_its_row(tmp_path: Path) -> None:
    path = tmp_path / "when.csv"
    path.write_text(
        "record_id,label,annotator,decided_at\n"
        "r1,positive,alice,yesterday\nr2,neutral,alice,2026-11-02 10:00\nr3,neutral,bob,\n"
    )
    parsed = parse_decisions(path)
    assert parsed.rows["record_id"].tolist() == ["r2", "r3"]
    assert parsed.errors == ["line 2: decided_at 'yesterday' is not an ISO 8601 date and time"]


def test_a_field_past_the_csv_limit_costs_its_row(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_bytes(b"record_id,label\nr1," + b"x" * 200_000 + b"\nr2,positive\n")
    parsed = parse_decisions(path)
    assert parsed.rows["record_id"].tolist() == ["r2"]
    assert len(parsed.errors) == 1 and parsed.errors[0].startswith("line 2: field larger")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.csv", b"", "is empty"),
        ("blank.json", b"  \n\t\n", "is empty"),
        ("broken.json", b'[{"record_id": "r1",', "not valid JSON"),
        ("object.json", b'{"record_id": "r1", "label": "positive"}', "JSON list"),
        ("columns.csv", b"id,choice\nr1,positive\n", "record_id"),
        ("latin1.csv", b"record_id,label\nr1,caf\xe9\n", "not UTF-8"),
        ("header-only-blank.csv", b"\n\n", "is empty"),
    ],
)
def test_unreadable_files_raise_a_one_line_review_file_error(
    tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ReviewFileError) as info:
        parse_decisions(path)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and message.strip() == message


def test_a_missing_file_raises_a_review_file_error(tmp_path: Path) -> None:
    with pytest.raises(ReviewFileError, match="cannot read"):
        parse_decisions(tmp_path / "nope.csv")


# --------------------------------------------------------------------------------- import


def _human_labels(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT * FROM {TASK}.human_labels ORDER BY ALL").fetchall()


def test_bad_rows_are_reported_by_line_while_valid_rows_are_imported(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    (a, *_), (b, *_) = _pending(conn)[:2]
    path = _csv(
        tmp_path / "mixed.csv",
        [
            (a, "positive", "alice"),
            ("no-such-record", "positive", "alice"),
            (b, "excellent", "alice"),
            (a, "negative", "alice"),
            (b, "negative", "bob"),
        ],
    )
    report = _import(conn, path)
    assert report.rows == 5
    assert report.imported == 2
    assert report.already_imported == 0
    assert [e.split(":")[0] for e in report.errors] == ["line 3", "line 4", "line 5"]
    assert "unknown record id 'no-such-record'" in report.errors[0]
    assert "unknown label 'excellent'" in report.errors[1]
    assert "duplicate decision" in report.errors[2] and "alice" in report.errors[2]
    assert [r[:3] for r in _human_labels(conn)] == [
        (a, "positive", "alice"),
        (b, "negative", "bob"),
    ]
    assert {r[4] for r in _human_labels(conn)} == {"mixed.csv"}


def test_labels_in_another_case_are_the_tasks_labels(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    (a, *_), (b, *_) = _pending(conn)[:2]
    path = _csv(tmp_path / "case.csv", [(a, "Positive", "alice"), (b, "NEGATIVE", "alice")])
    report = _import(conn, path)
    assert (report.imported, report.errors) == (2, [])
    assert {r[:2] for r in _human_labels(conn)} == {(a, "positive"), (b, "negative")}


def test_label_studio_row_errors_name_the_task(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    record = _pending(conn)[0][0]
    export = [
        {"data": {"record_id": record}, "annotations": [_annotation(["positive"], 1)]},
        {"data": {"record_id": "ghost"}, "annotations": [_annotation(["positive"], 1)]},
        {"data": {"record_id": record}, "annotations": [_annotation(["great"], 2)]},
    ]
    report = _import(conn, _json(tmp_path / "ls.json", export))
    assert report.imported == 1
    assert [e.split(":")[0] for e in report.errors] == ["task 2", "task 3"]


def test_importing_the_same_file_twice_imports_nothing_the_second_time(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    pending = _pending(conn)
    csv_path = _csv(tmp_path / "d.csv", [(p[0], "neutral", "alice") for p in pending[:3]])
    export = [
        {
            "data": {"record_id": p[0]},
            "annotations": [_annotation(["positive"], 3, updated_at="2026-11-02T10:00:00.123456Z")],
        }
        for p in pending[3:5]
    ]
    parsed = [parse_decisions(csv_path), parse_decisions(_json(tmp_path / "d.json", export))]

    def run() -> list[human.ImportReport]:
        return [human.import_decisions(conn, SPEC, d, source_file="d") for d in parsed]

    first = run()
    assert [r.imported for r in first] == [3, 2]
    table = _human_labels(conn)
    again = run()
    assert [r.imported for r in again] == [0, 0]
    assert [r.already_imported for r in again] == [3, 2]
    assert [r.errors for r in again] == [[], []]
    assert _human_labels(conn) == table
    # a fresh parse of the same file (as the asset does on every materialization) is a no-op too
    fresh = parse_decisions(csv_path)
    assert human.import_decisions(conn, SPEC, fresh, source_file="d").imported == 0
    assert _human_labels(conn) == table
    # and so is the same file arriving again under another name (annotate review import)
    again_new = human.import_decisions(conn, SPEC, fresh, source_file="d2", new_file=True)
    assert (again_new.imported, again_new.already_imported) == (0, 3)
    assert _human_labels(conn) == table


def test_replaying_a_kept_file_never_changes_a_vote_even_if_its_rows_were_skipped(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # A home from before per-file matching: x.csv and y.csv both said neutral, and y.csv's
    # row was skipped as a repeat but the file kept; z.csv then said positive.
    record = _pending(conn)[0][0]
    for name, label in [("x.csv", "neutral"), ("z.csv", "positive")]:
        parsed = parse_decisions(_csv(tmp_path / name, [(record, label, "alice")]))
        assert human.import_decisions(conn, SPEC, parsed, source_file=name).imported == 1
    y = parse_decisions(_csv(tmp_path / "y.csv", [(record, "neutral", "alice")]))
    replay = human.import_decisions(conn, SPEC, y, source_file="y.csv")
    assert (replay.imported, replay.already_imported) == (0, 1)
    votes = reconcile.latest_votes(human.decisions_frame(conn, TASK))
    assert votes.loc[votes["record_id"] == record, "label"].tolist() == ["positive"]


def test_decision_ids_are_read_as_drop_ids_are(tmp_path: Path) -> None:
    export = [
        {"data": {"record_id": 10.0}, "annotations": [_annotation(["positive"], 1)]},
        {"data": {"record_id": 7}, "annotations": [_annotation(["positive"], 1)]},
        {"data": {"record_id": 2.5}, "annotations": [_annotation(["positive"], 1)]},
    ]
    parsed = parse_decisions(_json(tmp_path / "ids.json", export))
    assert parsed.rows["record_id"].tolist() == ["10", "7"]
    assert parsed.errors == ["task 3: record_id: float 2.5 is not a whole number"]


def test_a_decisions_csv_header_is_read_as_a_drops(tmp_path: Path) -> None:
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("record_id,label,label\nr1,positive,negative\n")
    assert parse_decisions(repeated).rows["label"].tolist() == ["positive"]
    broken = tmp_path / "broken-header.csv"
    broken.write_text('"record_id,label\nr1,positive\n')
    with pytest.raises(ReviewFileError, match="line 1: the header line is unreadable"):
        parse_decisions(broken)


def test_an_annotator_who_goes_back_to_an_earlier_label_is_heard(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    record = _pending(conn)[0][0]
    files = []
    for i, label in enumerate(["neutral", "positive", "neutral"]):
        path = _csv(tmp_path / f"v{i}.csv", [(record, label, "alice")])
        parsed = parse_decisions(path)
        report = human.import_decisions(conn, SPEC, parsed, source_file=f"v{i}.csv", new_file=True)
        assert (report.imported, report.already_imported) == (1, 0)
        files.append((parsed, f"v{i}.csv"))
    votes = reconcile.latest_votes(human.decisions_frame(conn, TASK))
    assert votes.loc[votes["record_id"] == record, "label"].tolist() == ["neutral"]
    # replaying every kept file (as the human_labels asset does) changes nothing
    table = _human_labels(conn)
    for parsed, name in files:
        assert human.import_decisions(conn, SPEC, parsed, source_file=name).imported == 0
    assert _human_labels(conn) == table


def test_only_bad_rows_import_nothing(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = _csv(tmp_path / "bad.csv", [("ghost", "positive", "a"), ("ghost2", "meh", "a")])
    report = _import(conn, path)
    assert (report.rows, report.imported, report.already_imported) == (2, 0, 0)
    assert len(report.errors) == 2
    assert _human_labels(conn) == []


def test_a_failing_insert_rolls_back_and_leaves_the_connection_usable(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    (a, *_), (b, *_) = _pending(conn)[:2]
    rows = pd.DataFrame(
        [
            {
                "n": 2,
                "where": "line 2",
                "record_id": a,
                "label": "positive",
                "annotator": "alice",
                "decided_at": None,
            },
            # NULL annotator violates human_labels' NOT NULL: the INSERT fails inside the
            # transaction, after the validation passed.
            {
                "n": 3,
                "where": "line 3",
                "record_id": b,
                "label": "negative",
                "annotator": None,
                "decided_at": None,
            },
        ]
    )
    parsed = reviews.ParsedDecisions(rows=rows)
    with pytest.raises(duckdb.Error):
        human.import_decisions(conn, SPEC, parsed, source_file="broken.csv")
    assert _human_labels(conn) == []
    conn.execute("BEGIN TRANSACTION")  # fails if the import left its transaction open
    conn.execute("ROLLBACK")
    good = reviews.ParsedDecisions(rows=rows.iloc[:1])
    assert human.import_decisions(conn, SPEC, good, source_file="ok.csv").imported == 1


def test_importing_into_a_task_without_tables_raises_and_writes_nothing(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    record = _pending(conn)[0][0]
    path = _csv(tmp_path / "d.csv", [(record, "positive", "alice")])
    with pytest.raises(duckdb.CatalogException):
        _import(conn, path, make_spec(name="ghost", review=REVIEW))
    assert _human_labels(conn) == []


# ------------------------------------------------------------------ reconciliation (pipeline)


def _final(warehouse: Warehouse, record_id: str) -> list[tuple[Any, ...]]:
    with warehouse.connect() as conn:
        return conn.execute(
            f"SELECT label, source, confidence, annotators FROM {TASK}.final_dataset WHERE id = ?",
            [record_id],
        ).fetchall()


def _reason(warehouse: Warehouse, record_id: str) -> str | None:
    with warehouse.connect() as conn:
        row = conn.execute(
            f"SELECT reason FROM {TASK}.hitl_pending WHERE record_id = ?", [record_id]
        ).fetchone()
    return row[0] if row else None


def _vote(warehouse: Warehouse, path: Path, *rows: tuple[str, str, str]) -> None:
    with warehouse.connect() as conn:
        report = _import(conn, _csv(path, list(rows)))
    assert report.errors == [] and report.imported == len(rows)
    queue_for_review(warehouse.connect, SPEC, "d1")
    build_final_dataset(warehouse.connect, SPEC, "d1")


def test_votes_are_reconciled_into_the_queue_and_the_final_dataset(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    with warehouse.connect() as conn:
        pending = _pending(conn)
        before = drop_counts(conn, TASK, "d1")
    contested, agreed = pending[0][0], pending[1][0]

    _vote(
        warehouse,
        tmp_path / "1.csv",
        (contested, "positive", "alice"),
        (agreed, "negative", "alice"),
    )
    assert _reason(warehouse, contested) == "awaiting_votes"
    assert _reason(warehouse, agreed) == "awaiting_votes"
    assert _final(warehouse, contested) == []

    _vote(
        warehouse, tmp_path / "2.csv", (contested, "negative", "bob"), (agreed, "negative", "bob")
    )
    assert _reason(warehouse, contested) == "contested"
    assert _reason(warehouse, agreed) is None
    assert _final(warehouse, agreed) == [("negative", "human", 1.0, ["alice", "bob"])]
    with warehouse.connect() as conn:
        queue = human.review_queue(conn, SPEC)
        tasks = reviews.label_studio_tasks(queue, human.votes_by_record(conn, TASK))
    assert tasks[0]["data"]["record_id"] == contested
    assert tasks[0]["data"]["adjudicate"] is True

    _vote(warehouse, tmp_path / "3.csv", (contested, "neutral", "lead"))
    assert _reason(warehouse, contested) is None
    assert _final(warehouse, contested) == [("neutral", "human", 1.0, ["alice", "bob", "lead"])]

    with warehouse.connect() as conn:
        after = drop_counts(conn, TASK, "d1")
        decisions = human_decisions(conn, SPEC).set_index("record_id")
    assert after["by_source"]["human"] == 2
    assert after["hitl_pending"] == before["hitl_pending"] - 2
    assert after["final_rows"] == before["final_rows"] + 2
    assert decisions.loc[contested, "status"] == "decided"
    assert decisions.loc[agreed, "n_votes"] == 2


# ---------------------------------------------------------------- human_labels asset & check


def _materialization(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey([TASK, "human_labels"])
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _import_job(deployment: Deployment) -> dg.ExecuteInProcessResult:
    job = deployment.defs.resolve_job_def(f"{TASK}_import_reviews")
    result = job.execute_in_process(instance=deployment.instance)
    assert result.success
    return result


def test_human_labels_asset_imports_the_reviews_folder_and_reports_agreement(
    deployment: Deployment, conn: duckdb.DuckDBPyConnection
) -> None:
    records = [p[0] for p in _pending(conn)[:4]]
    conn.close()
    folder = deployment.home.reviews / TASK
    rows = [(r, "positive", "alice") for r in records]
    rows += [(r, "negative", "bob") for r in records]
    _csv(folder / "batch1.csv", [*rows, ("ghost", "positive", "alice")])
    (folder / "broken.json").write_text("[{", encoding="utf-8")
    (folder / "notes.txt").write_text("not a decisions file", encoding="utf-8")

    result = _import_job(deployment)
    meta = _materialization(result)
    assert meta["files"] == {
        "batch1.csv": {"imported": 8, "already_imported": 0, "row_errors": 1},
        "broken.json": {"error": meta["files"]["broken.json"]["error"]},
    }
    assert "not valid JSON" in meta["files"]["broken.json"]["error"]
    assert meta["dagster/row_count"] == 8
    assert meta["records_by_status"] == {"contested": 4}
    assert meta["votes_by_annotator"] == {"alice": 4, "bob": 4}
    agreement = meta["agreement"]
    assert agreement["annotators"] == 2
    assert agreement["records_with_2plus_votes"] == 4
    assert agreement["krippendorff_alpha"] is not None
    assert agreement["krippendorff_alpha"] < 0
    assert meta["krippendorff_alpha"] == agreement["krippendorff_alpha"]

    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "agreement"
    ]
    assert check.passed is False
    assert check.severity == dg.AssetCheckSeverity.WARN

    again = _materialization(_import_job(deployment))
    assert again["files"]["batch1.csv"] == {"imported": 0, "already_imported": 8, "row_errors": 1}
    assert again["dagster/row_count"] == 8


def test_a_file_whose_rows_were_all_valid_is_not_replayed_until_its_bytes_change(
    deployment: Deployment, conn: duckdb.DuckDBPyConnection, tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    records = [p[0] for p in _pending(conn)[:3]]
    # a record that is not in the warehouse yet: its row is an error until it arrives
    late = conn.execute(
        f"SELECT * REPLACE ('late-1' AS record_id) FROM {TASK}.normalized_records LIMIT 1"
    ).fetchdf()
    conn.close()
    folder = deployment.home.reviews / TASK
    _csv(folder / "clean.csv", [(r, "positive", "alice") for r in records[:2]])
    _csv(folder / "early.csv", [(records[2], "negative", "bob"), ("late-1", "positive", "bob")])

    files = _materialization(_import_job(deployment))["files"]
    assert files == {
        "clean.csv": {"imported": 2, "already_imported": 0, "row_errors": 0},
        "early.csv": {"imported": 1, "already_imported": 0, "row_errors": 1},
    }
    # the clean file is skipped by its bytes; the one with an error is replayed
    files = _materialization(_import_job(deployment))["files"]
    assert files == {
        "clean.csv": {"unchanged": True, "rows": 2},
        "early.csv": {"imported": 0, "already_imported": 1, "row_errors": 1},
    }

    # the late record arrives: the replay imports its row, and then skips the file too
    with duckdb.connect(str(deployment.home.warehouse)) as db:
        db.register("late", late)
        db.execute(f"INSERT INTO {TASK}.normalized_records SELECT * FROM late")
    files = _materialization(_import_job(deployment))["files"]
    assert files["early.csv"] == {"imported": 1, "already_imported": 1, "row_errors": 0}
    # a file changed in place (same name, other bytes) is replayed
    _csv(folder / "clean.csv", [(r, "negative", "alice") for r in records[:2]])
    files = _materialization(_import_job(deployment))["files"]
    assert files == {
        "clean.csv": {"imported": 2, "already_imported": 0, "row_errors": 0},
        "early.csv": {"unchanged": True, "rows": 2},
    }
    with duckdb.connect(str(deployment.home.warehouse)) as db:
        votes = db.execute(
            f"SELECT source_file, count(*) FROM {TASK}.human_labels GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        ledger = db.execute(
            f"SELECT file, rows FROM {TASK}.review_files ORDER BY replayed_at"
        ).fetchall()
    assert votes == [("clean.csv", 4), ("early.csv", 2)]
    assert ledger == [("clean.csv", 2), ("early.csv", 2), ("clean.csv", 2)]

    # other labels in the spec (a label added, or one renamed, which changes which rows are
    # valid and what they name): every file is replayed
    labels = ["negative", "neutral", "positive", "mixed"]
    renamed = Deployment(
        deployment.home, _write_tasks(tmp_path / "renamed", labels=labels), tiny_encoder_dir
    )
    files = _materialization(_import_job(renamed))["files"]
    assert files == {
        "clean.csv": {"imported": 0, "already_imported": 2, "row_errors": 0},
        "early.csv": {"imported": 0, "already_imported": 2, "row_errors": 0},
    }


def test_agreement_check_passes_when_annotators_agree(
    deployment: Deployment, conn: duckdb.DuckDBPyConnection
) -> None:
    records = [p[0] for p in _pending(conn)[:4]]
    conn.close()
    labels = ["positive", "negative", "neutral", "positive"]
    rows = [
        (r, lab, who) for r, lab in zip(records, labels, strict=True) for who in ("alice", "bob")
    ]
    _csv(deployment.home.reviews / TASK / "agree.csv", rows)
    result = _import_job(deployment)
    meta = _materialization(result)
    assert meta["agreement"]["krippendorff_alpha"] == pytest.approx(1.0)
    assert meta["records_by_status"] == {"decided": 4}
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "agreement"
    ]
    assert check.passed is True


def test_agreement_is_not_computed_from_single_votes(deployment: Deployment) -> None:
    with duckdb.connect(str(deployment.home.warehouse)) as conn:
        records = [p[0] for p in _pending(conn)[:3]]
    _csv(deployment.home.reviews / TASK / "one.csv", [(r, "positive", "alice") for r in records])
    result = _import_job(deployment)
    meta = _materialization(result)
    assert meta["agreement"]["krippendorff_alpha"] is None
    assert meta["records_by_status"] == {"awaiting_votes": 3}
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "agreement"
    ]
    assert check.passed is True


# -------------------------------------------------------------------------------- sensors


@pytest.fixture
def bare_defs(tmp_path: Path) -> tuple[Home, dg.Definitions]:
    """Definitions on an empty home (no encoder needed: nothing here scores records)."""
    home = Home(tmp_path / "bare").create()
    return home, build_definitions(home, _write_tasks(tmp_path / "bare-tasks"))


def test_review_sensor_requests_an_import_per_new_or_changed_file(
    bare_defs: tuple[Home, dg.Definitions],
) -> None:
    home, defs = bare_defs
    sensor = defs.resolve_sensor_def(f"{TASK}_new_reviews")
    assert sensor.job_name == f"{TASK}_import_reviews"
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
        return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))

    assert isinstance(tick(None), dg.SkipReason)
    folder = home.reviews / TASK
    path = _csv(folder / "batch1.csv", [("r1", "positive", "alice")])
    (folder / ".batch2.csv.tmp").write_text("partial")
    (folder / "readme.txt").write_text("ignored")

    first = tick(None)
    assert isinstance(first, dg.SensorResult)
    (request,) = first.run_requests or []
    assert request.job_name in (None, f"{TASK}_import_reviews")
    assert "batch1.csv" in (request.run_key or "")
    assert set(json.loads(first.cursor or "{}")) == {"batch1.csv"}

    assert isinstance(tick(first.cursor), dg.SkipReason)

    path.write_text("record_id,label,annotator\nr1,negative,alice\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    changed = tick(first.cursor)
    assert isinstance(changed, dg.SensorResult)
    (again,) = changed.run_requests or []
    assert again.run_key != request.run_key
    assert isinstance(tick(changed.cursor), dg.SkipReason)


def test_rescore_sensor_requests_one_run_per_drop_after_human_labels_materialize(
    bare_defs: tuple[Home, dg.Definitions],
) -> None:
    _, defs = bare_defs
    sensor = defs.resolve_sensor_def(f"{TASK}_rescore_after_reviews")
    assert sensor.job_name == f"{TASK}_rescore"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(f"{TASK}_drops", ["d1", "d2"])

    def tick(cursor: str | None) -> Any:
        # an asset sensor called directly yields a generator; evaluate_tick runs it as the
        # daemon does and reads the asset's materializations after the cursor
        # (validating the requested partitions needs the instance as partitions store)
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor)
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            return sensor.evaluate_tick(context)

    assert not tick(None).run_requests

    run = defs.resolve_job_def(f"{TASK}_import_reviews").execute_in_process(instance=instance)
    assert run.success
    result = tick(None)
    requests = result.run_requests or []
    assert sorted(r.partition_key for r in requests) == ["d1", "d2"]
    assert {r.run_key for r in requests} == {f"rescore:{run.run_id}:{d}" for d in ("d1", "d2")}
    assert all(r.job_name in (None, f"{TASK}_rescore") for r in requests)

    assert not tick(result.cursor).run_requests
    second = defs.resolve_job_def(f"{TASK}_import_reviews").execute_in_process(instance=instance)
    following = tick(result.cursor).run_requests or []
    assert {r.run_key for r in following} == {f"rescore:{second.run_id}:{d}" for d in ("d1", "d2")}
