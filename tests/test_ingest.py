"""Streaming ingestion of drop folders: records, quarantine reason codes, formats, chunking."""

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation_assets.core.ingest import (
    BAD_NAME,
    INVALID_ID,
    INVALID_TEXT,
    INVALID_UTF8,
    LINE_TOO_LONG,
    MALFORMED_CSV,
    MALFORMED_JSON,
    MISSING_ID,
    MISSING_TEXT,
    NOT_AN_OBJECT,
    OUTSIDE_DROP,
    RAW_COLUMNS,
    RECORDS_NOT_FOUND,
    UNREADABLE_FILE,
    UNSUPPORTED_FILE,
    FieldMap,
    csv_delimiter,
    has_surrogates,
    iter_raw_chunks,
    list_drop_files,
)


def _rows(drop: Path, **options: Any) -> list[dict[Any, Any]]:
    chunks = list(iter_raw_chunks(drop, **options))
    if not chunks:
        return []
    return pd.concat(chunks, ignore_index=True).to_dict("records")


def _drop_with(tmp_path: Path, name: str, content: bytes | str) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    (drop / name).write_bytes(data)
    return drop


def _only_row(drop: Path, **options: Any) -> dict[Any, Any]:
    rows = _rows(drop, **options)
    assert len(rows) == 1, rows
    return rows[0]


def _jsonl_error(tmp_path: Path, line: str | bytes, **options: Any) -> str:
    raw = line.encode("utf-8") if isinstance(line, str) else line
    return str(_only_row(_drop_with(tmp_path, "part.jsonl", raw + b"\n"), **options)["error"])


# ------------------------------------------------------------------ records


def test_jsonl_record_becomes_a_raw_row_without_error(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": "a1", "text": "hello"}\n')

    row = _only_row(drop)

    assert (row["source_file"], row["line_no"]) == ("part.jsonl", 1)
    assert (row["record_id"], row["text"], row["error"]) == ("a1", "hello", None)
    assert row["payload"] == '{"id": "a1", "text": "hello"}'


def test_chunks_have_the_raw_columns(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": "a1", "text": "hello"}\n')

    (chunk,) = iter_raw_chunks(drop)

    assert list(chunk.columns) == RAW_COLUMNS


def test_numeric_ids_become_strings(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": 42, "text": "hello"}\n')

    assert _only_row(drop)["record_id"] == "42"


def test_extra_fields_land_in_meta_as_json(tmp_path: Path) -> None:
    line = '{"id": "a", "text": "hi", "stars": 5, "tags": ["x"], "shop": null}\n'
    drop = _drop_with(tmp_path, "part.jsonl", line)

    assert json.loads(_only_row(drop)["meta"]) == {"stars": 5, "tags": ["x"], "shop": None}


def test_record_without_extra_fields_has_no_meta(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": "a", "text": "hi"}\n')

    assert _only_row(drop)["meta"] is None


def test_blank_jsonl_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    content = '\n{"id": "a", "text": "x"}\n   \n\r\n{"id": "b", "text": "y"}\n'
    drop = _drop_with(tmp_path, "part.jsonl", content)

    rows = _rows(drop)

    assert [(r["record_id"], r["line_no"]) for r in rows] == [("a", 2), ("b", 5)]


def test_custom_field_mapping_reads_other_columns(tmp_path: Path) -> None:
    line = '{"review_id": "r9", "body": "great", "id": "ignored-id", "text": "ignored"}\n'
    drop = _drop_with(tmp_path, "part.jsonl", line)

    row = _only_row(drop, fields=FieldMap(id="review_id", text="body"))

    assert (row["record_id"], row["text"]) == ("r9", "great")
    assert json.loads(row["meta"]) == {"id": "ignored-id", "text": "ignored"}


def test_gzip_jsonl_is_read(tmp_path: Path) -> None:
    content = gzip.compress(b'{"id": "g1", "text": "zipped"}\n{"id": "g2", "text": "too"}\n')
    drop = _drop_with(tmp_path, "part.jsonl.gz", content)

    assert [(r["record_id"], r["text"]) for r in _rows(drop)] == [("g1", "zipped"), ("g2", "too")]


def test_parquet_rows_are_read_with_row_numbers(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    table = pa.table({"id": [7, 8], "text": ["first", "second"], "stars": [1, 5]})
    pq.write_table(table, drop / "part.parquet")

    rows = _rows(drop)

    assert [(r["line_no"], r["record_id"], r["text"]) for r in rows] == [
        (1, "7", "first"),
        (2, "8", "second"),
    ]
    assert json.loads(rows[1]["meta"]) == {"stars": 5}
    assert json.loads(rows[0]["payload"]) == {"id": 7, "text": "first", "stars": 1}


def test_csv_records_are_read_by_header(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", "id,text,stars\n1,good,5\n2,bad,1\n")

    rows = _rows(drop)

    assert [(r["line_no"], r["record_id"], r["text"]) for r in rows] == [
        (2, "1", "good"),
        (3, "2", "bad"),
    ]
    assert json.loads(rows[0]["meta"]) == {"stars": "5"}


def test_csv_quoted_multiline_field_is_one_record_at_its_first_line(tmp_path: Path) -> None:
    content = 'id,text\n1,"line one\nline two"\n2,after\n'
    drop = _drop_with(tmp_path, "part.csv", content)

    rows = _rows(drop)

    assert [(r["line_no"], r["record_id"], r["text"]) for r in rows] == [
        (2, "1", "line one\nline two"),
        (4, "2", "after"),
    ]


def test_csv_field_with_an_inch_mark_parses(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", 'id,text\n1,5" screen is great\n')

    row = _only_row(drop)

    assert (row["record_id"], row["text"], row["error"]) == ("1", '5" screen is great', None)


def test_files_are_read_in_sorted_order_with_relative_paths(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "sub" / "a.jsonl").write_text('{"id": "s", "text": "x"}\n')
    (drop / "b.jsonl").write_text('{"id": "b", "text": "x"}\n')

    assert [r["source_file"] for r in _rows(drop)] == ["b.jsonl", "sub/a.jsonl"]


def test_marker_and_hidden_files_are_not_listed(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / ".cache").mkdir(parents=True)
    (drop / ".cache" / "x.jsonl").write_text("{}\n")
    (drop / "_SUCCESS").write_text("")
    (drop / ".part.jsonl.crc").write_text("")
    (drop / "part.jsonl").write_text('{"id": "a", "text": "x"}\n')

    assert list_drop_files(drop) == [drop / "part.jsonl"]


def test_marker_and_hidden_files_give_no_rows(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "_SUCCESS", "")
    (drop / ".hidden.jsonl").write_text('{"id": "h", "text": "x"}\n')

    assert _rows(drop) == []


@pytest.mark.parametrize(
    ("name", "delimiter"),
    [("part.csv", ";"), ("part.csv", "\t"), ("part.csv", "|"), ("part.tsv", "\t")],
)
def test_csv_fields_are_split_as_the_header_shows(
    tmp_path: Path, name: str, delimiter: str
) -> None:
    """Spreadsheets in locales with a decimal comma save CSV with semicolons; TSV uses tabs."""
    lines = [
        delimiter.join(["id", "text", "rating"]),
        delimiter.join(["a1", '"Sturdy, well made; two\nlines"', "4,5"]),
        delimiter.join(["a2", "plain", "3"]),
    ]
    rows = _rows(_drop_with(tmp_path, name, "\n".join(lines) + "\n"))

    assert [(r["line_no"], r["record_id"], r["text"], r["error"]) for r in rows] == [
        (2, "a1", "Sturdy, well made; two\nlines", None),
        (4, "a2", "plain", None),
    ]
    assert json.loads(rows[0]["meta"]) == {"rating": "4,5"}


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_header_with_a_quoted_multiline_name_still_shows_the_separator(
    tmp_path: Path, delimiter: str
) -> None:
    header = delimiter.join(["id", "text", '"note\n(free)"'])
    rows = _rows(_drop_with(tmp_path, "part.csv", header + "\n" + delimiter.join("abc") + "\n"))

    assert [(r["record_id"], r["text"], r["error"]) for r in rows] == [("a", "b", None)]
    assert json.loads(rows[0]["meta"]) == {"note\n(free)": "c"}


def test_an_excel_separator_line_names_the_separator_and_is_not_a_record(tmp_path: Path) -> None:
    rows = _rows(_drop_with(tmp_path, "part.csv", "sep=;\r\nid;text\r\na;b, c\r\n"))

    assert [(r["line_no"], r["record_id"], r["text"]) for r in rows] == [(3, "a", "b, c")]


def test_a_tsv_file_prefers_the_tab_on_a_tie(tmp_path: Path) -> None:
    rows = _rows(_drop_with(tmp_path, "part.tsv", "id\ttext, raw\na\tb, c\n"))

    assert [(r["record_id"], r["error"]) for r in rows] == [("a", MISSING_TEXT)]
    assert rows[0]["detail"] == "field 'text' absent; the record has id, text, raw"


def test_a_tsv_line_of_tabs_is_a_record_of_empty_fields_not_a_blank_line(tmp_path: Path) -> None:
    rows = _rows(_drop_with(tmp_path, "part.tsv", "id\ttext\n\t\n1\thi\n"))

    assert [(r["line_no"], r["record_id"], r["error"]) for r in rows] == [
        (2, None, MISSING_ID),
        (3, "1", None),
    ]


def test_a_gzipped_tsv_file_is_read(tmp_path: Path) -> None:
    content = gzip.compress(b"id\ttext\nt1\thello there\n")

    row = _only_row(_drop_with(tmp_path, "part.tsv.gz", content))

    assert (row["record_id"], row["text"]) == ("t1", "hello there")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("id,text", ","),
        ("id;text", ";"),
        ("id\ttext", "\t"),
        ("id|text", "|"),
        ('"id";"text"', ";"),
        ('id,text,"price; eur"', ","),  # a quoted name holding another separator
        ("id;text;note,extra", ";"),
        ("text", ","),
        ("", ","),
    ],
)
def test_the_csv_delimiter_is_the_one_splitting_the_header_into_most_names(
    header: str, expected: str
) -> None:
    assert csv_delimiter(header) == expected


def test_a_semicolon_row_with_the_wrong_field_count_is_malformed(tmp_path: Path) -> None:
    rows = _rows(_drop_with(tmp_path, "part.csv", "id;text\na;b;c\nd;e\n"))

    assert [(r["line_no"], r["error"]) for r in rows] == [(2, MALFORMED_CSV), (3, None)]


# ------------------------------------------------------------------ nested fields


def test_dotted_field_names_reach_into_nested_objects(tmp_path: Path) -> None:
    line = {"review": {"id": 7, "body": "Great pan", "title": "Nice"}, "stars": 5}
    drop = _drop_with(tmp_path, "part.jsonl", json.dumps(line) + "\n")

    row = _only_row(drop, fields=FieldMap(id="review.id", text="review.body"))

    assert (row["record_id"], row["text"], row["error"]) == ("7", "Great pan", None)
    # the id and text leave meta; the rest of their object stays, in its place
    assert json.loads(row["meta"]) == {"review": {"title": "Nice"}, "stars": 5}
    assert list(json.loads(row["meta"])) == ["review", "stars"]


def test_a_key_that_holds_dots_is_read_before_a_nested_path(tmp_path: Path) -> None:
    line = {"id": "a", "review.body": "flat key", "review": {"body": "nested"}}
    drop = _drop_with(tmp_path, "part.jsonl", json.dumps(line) + "\n")

    row = _only_row(drop, fields=FieldMap(text="review.body"))

    assert row["text"] == "flat key"
    assert json.loads(row["meta"]) == {"review": {"body": "nested"}}


def test_meta_loses_the_field_that_was_read_and_nothing_else(tmp_path: Path) -> None:
    line = {"id": "a", "a": {"b.c": "KEEP", "b": {"c": "TEXT", "d": 1}}}
    drop = _drop_with(tmp_path, "part.jsonl", json.dumps(line) + "\n")

    row = _only_row(drop, fields=FieldMap(text="a.b.c"))

    assert row["text"] == "TEXT"  # one key per part: a, b, c
    assert json.loads(row["meta"]) == {"a": {"b.c": "KEEP", "b": {"d": 1}}}


@pytest.mark.parametrize("name", ["No.", ".a", "a..b"])
def test_a_name_with_an_empty_part_is_only_a_key(tmp_path: Path, name: str) -> None:
    line = {"id": "a", name: "the text", "a": {"b": "nested"}, "No": {"": "x"}}
    drop = _drop_with(tmp_path, "part.jsonl", json.dumps(line) + "\n")

    assert _only_row(drop, fields=FieldMap(text=name))["text"] == "the text"


def test_a_nested_object_emptied_of_its_text_leaves_meta(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": "a", "r": {"body": "x"}}\n')

    row = _only_row(drop, fields=FieldMap(text="r.body"))

    assert (row["text"], row["meta"]) == ("x", None)


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "a", "review": {"title": "no body"}}',
        '{"id": "a", "review": "a string, not an object"}',
        '{"id": "a"}',
    ],
)
def test_a_missing_nested_text_is_missing_text_naming_the_fields(tmp_path: Path, line: str) -> None:
    row = _only_row(
        _drop_with(tmp_path, "part.jsonl", line + "\n"), fields=FieldMap(text="review.body")
    )

    assert row["error"] == MISSING_TEXT
    assert row["detail"].startswith("field 'review.body' absent; the record has id")


def test_a_parquet_struct_column_is_read_by_a_dotted_field(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    table = pa.table(
        {
            "sku": ["s1", "s2"],
            "review": [{"body": "Solid", "lang": "en"}, {"body": "Bof", "lang": "fr"}],
        }
    )
    pq.write_table(table, drop / "part.parquet")

    rows = _rows(drop, fields=FieldMap(id="sku", text="review.body"))

    assert [(r["record_id"], r["text"], json.loads(r["meta"])) for r in rows] == [
        ("s1", "Solid", {"review": {"lang": "en"}}),
        ("s2", "Bof", {"review": {"lang": "fr"}}),
    ]


# ------------------------------------------------------------------ .json files

_JSON_RECORDS = [{"id": f"r{i}", "text": f"review {i}", "stars": i} for i in range(3)]


def _json_rows_of(tmp_path: Path, content: bytes | str, name: str = "items.json") -> list[Any]:
    return [
        (r["line_no"], r["record_id"], r["error"])
        for r in _rows(_drop_with(tmp_path, name, content))
    ]


def _scrapy_feed(items: list[str]) -> str:
    """A JSON array laid out as Scrapy's JSON feed export writes it: one item per line."""
    return "[\n" + ",\n".join(items) + "\n]"


@pytest.mark.parametrize(
    "content",
    [
        _scrapy_feed([json.dumps(r) for r in _JSON_RECORDS]),
        json.dumps(_JSON_RECORDS),
        json.dumps(_JSON_RECORDS, indent=2),
        "\n".join(json.dumps(r) for r in _JSON_RECORDS) + "\n",
        "\ufeff" + json.dumps(_JSON_RECORDS),
    ],
    ids=["scrapy-feed", "minified", "indented", "json-lines", "bom"],
)
def test_a_json_file_of_records_is_read_in_any_layout(tmp_path: Path, content: str) -> None:
    rows = _rows(_drop_with(tmp_path, "items.json", content))

    assert [(r["record_id"], r["text"], r["error"]) for r in rows] == [
        ("r0", "review 0", None),
        ("r1", "review 1", None),
        ("r2", "review 2", None),
    ]
    assert [json.loads(r["meta"]) for r in rows] == [{"stars": 0}, {"stars": 1}, {"stars": 2}]


def test_json_rows_are_numbered_by_the_line_their_value_starts_on(tmp_path: Path) -> None:
    assert [n for n, _, _ in _json_rows_of(tmp_path, json.dumps(_JSON_RECORDS, indent=2))] == [
        2,
        7,
        12,
    ]


def test_one_pretty_printed_object_is_one_record(tmp_path: Path) -> None:
    content = json.dumps(_JSON_RECORDS[0], indent=4)

    assert _json_rows_of(tmp_path, content) == [(1, "r0", None)]


@pytest.mark.parametrize("content", ["", "  \n", "[]", "[\n]\n"])
def test_an_empty_json_file_or_array_gives_no_rows(tmp_path: Path, content: str) -> None:
    assert _json_rows_of(tmp_path, content) == []


def test_a_gzipped_json_file_is_read(tmp_path: Path) -> None:
    content = gzip.compress(json.dumps(_JSON_RECORDS).encode())

    assert [rid for _, rid, _ in _json_rows_of(tmp_path, content, "items.json.gz")] == [
        "r0",
        "r1",
        "r2",
    ]


def test_a_broken_element_of_a_scrapy_feed_costs_that_element_only(tmp_path: Path) -> None:
    broken = '{"id": "bad", "text": "unterminated}'
    items = [json.dumps(_JSON_RECORDS[0]), broken, json.dumps(_JSON_RECORDS[2])]
    rows = _rows(_drop_with(tmp_path, "items.json", _scrapy_feed(items)))

    assert [(r["line_no"], r["record_id"], r["error"]) for r in rows] == [
        (2, "r0", None),
        (3, None, MALFORMED_JSON),
        (4, "r2", None),
    ]
    assert rows[1]["payload"] == broken + ","
    assert rows[1]["detail"] == "Invalid control character at: line 3 column 38"  # its newline


def test_a_broken_element_of_an_indented_array_costs_that_element_only(tmp_path: Path) -> None:
    content = json.dumps(_JSON_RECORDS, indent=2).replace('"review 1"', '"review 1" oops')

    assert _json_rows_of(tmp_path, content) == [
        (2, "r0", None),
        (7, None, MALFORMED_JSON),
        (12, "r2", None),
    ]


def test_damage_in_a_minified_array_keeps_the_rest_of_the_file_in_one_row(tmp_path: Path) -> None:
    """Without line starts to pick up at, the elements after the damage cannot be told from
    objects nested in the broken one: the rest of the file is kept, verbatim, as one row."""
    content = json.dumps(_JSON_RECORDS).replace('"review 1"', '"review 1" oops')
    rows = _rows(_drop_with(tmp_path, "items.json", content))

    assert [(r["record_id"], r["error"]) for r in rows] == [("r0", None), (None, MALFORMED_JSON)]
    assert rows[1]["payload"] == content[content.index('{"id": "r1"') :]


def test_a_missing_comma_between_elements_loses_no_record(tmp_path: Path) -> None:
    content = "[\n" + "\n".join(json.dumps(r) for r in _JSON_RECORDS) + "\n]"

    assert _json_rows_of(tmp_path, content) == [(2, "r0", None), (3, "r1", None), (4, "r2", None)]


def test_json_values_that_are_not_objects_are_quarantined(tmp_path: Path) -> None:
    rows = _rows(
        _drop_with(tmp_path, "items.json", '[1, "two", null, [3], {"id": "a", "text": "x"}]')
    )

    assert [(r["error"], r["detail"]) for r in rows] == [
        (NOT_AN_OBJECT, "int"),
        (NOT_AN_OBJECT, "str"),
        (NOT_AN_OBJECT, "NoneType"),
        (NOT_AN_OBJECT, "list"),
        (None, None),
    ]


def test_an_element_with_invalid_utf8_is_quarantined_and_the_next_is_read(tmp_path: Path) -> None:
    items = [b'{"id": "a", "text": "caf\xe9"}', json.dumps(_JSON_RECORDS[1]).encode()]
    rows = _rows(_drop_with(tmp_path, "items.json", b"[\n" + b",\n".join(items) + b"\n]"))

    assert [(r["record_id"], r["error"]) for r in rows] == [(None, INVALID_UTF8), ("r1", None)]
    assert rows[0]["payload"] == '{"id": "a", "text": "caf\\xe9"}'


@pytest.mark.parametrize("size", [5_000, 300_000])  # within one read of the file, or beyond
def test_an_element_over_max_line_bytes_is_too_long_and_the_next_is_read(
    tmp_path: Path, size: int
) -> None:
    items = [json.dumps({"id": "big", "text": "x" * size}), json.dumps(_JSON_RECORDS[1])]
    rows = _rows(_drop_with(tmp_path, "items.json", _scrapy_feed(items)), max_line_bytes=1000)

    assert [(r["record_id"], r["error"]) for r in rows] == [(None, LINE_TOO_LONG), ("r1", None)]
    assert rows[0]["payload"].startswith(items[0])  # with its comma when not parsed whole
    assert rows[0]["detail"] == f"{len(rows[0]['payload'])} bytes"


def test_deeply_nested_json_element_is_malformed_not_a_crash(tmp_path: Path) -> None:
    items = ["[" * 100_000 + "]" * 100_000, json.dumps(_JSON_RECORDS[0])]

    assert _json_rows_of(tmp_path, _scrapy_feed(items)) == [
        (2, None, MALFORMED_JSON),
        (3, "r0", None),
    ]


def test_a_truncated_array_keeps_its_whole_elements(tmp_path: Path) -> None:
    content = json.dumps(_JSON_RECORDS, indent=2)[:-30]

    assert _json_rows_of(tmp_path, content) == [
        (2, "r0", None),
        (7, "r1", None),
        (12, None, MALFORMED_JSON),
    ]


def test_text_after_the_array_is_kept_as_malformed(tmp_path: Path) -> None:
    content = json.dumps(_JSON_RECORDS[:1]) + " trailing words"

    assert _json_rows_of(tmp_path, content) == [(1, "r0", None), (1, None, MALFORMED_JSON)]


def test_a_json_feed_larger_than_the_read_buffer_is_read_whole(tmp_path: Path) -> None:
    records = [{"id": f"r{i}", "text": "x" * 200} for i in range(12_000)]  # about 2.6 MB
    content = _scrapy_feed([json.dumps(r) for r in records])

    rows = _json_rows_of(tmp_path, content)

    assert rows == [(i + 2, f"r{i}", None) for i in range(12_000)]


def test_an_integer_too_long_for_python_is_malformed_not_a_crash(tmp_path: Path) -> None:
    content = (
        '[\n{"id": "a", "text": "x", "n": '
        + "1" * 5000
        + "},\n"
        + json.dumps(_JSON_RECORDS[1])
        + "\n]"
    )

    rows = _json_rows_of(tmp_path, content)

    assert rows == [(2, None, MALFORMED_JSON), (3, "r1", None)]


@pytest.mark.parametrize(
    "content",
    [
        '[\n{"id": "cut", "text": "a",\n{"id": "r1", "text": "review 1"}\n]',
        '{"id": "cut", "text": \n{"id": "r1", "text": "review 1"}\n',
        '[\n  {\n    "id": "cut",\n    "text": "a"\n,\n  {\n    "id": "r1",'
        ' "text": "review 1"\n  }\n]',
    ],
    ids=["scrapy", "json-lines", "indented"],
)
def test_a_value_cut_short_does_not_take_the_next_element_with_it(
    tmp_path: Path, content: str
) -> None:
    """The damage is noticed at the next element's opening brace, on that element's line."""
    rows = _json_rows_of(tmp_path, content)

    assert [(rid, error) for _, rid, error in rows] == [(None, MALFORMED_JSON), ("r1", None)]


def test_an_over_long_element_of_a_minified_array_costs_that_element_only(
    tmp_path: Path,
) -> None:
    records = [{"id": f"r{i}", "text": "t" * (300_000 if i == 1 else 100)} for i in range(50)]

    rows = _rows(_drop_with(tmp_path, "items.json", json.dumps(records)), max_line_bytes=100_000)

    assert [(r["record_id"], r["error"]) for r in rows] == [
        (None if i == 1 else f"r{i}", LINE_TOO_LONG if i == 1 else None) for i in range(50)
    ]
    assert rows[1]["payload"] == json.dumps(records[1])


def test_a_feed_appended_to_twice_gives_every_record(tmp_path: Path) -> None:
    """Running Scrapy's `-o items.json` twice appends a second array to the first."""
    first = _scrapy_feed([json.dumps(r) for r in _JSON_RECORDS[:2]])
    second = _scrapy_feed([json.dumps(_JSON_RECORDS[2])])

    rows = _json_rows_of(tmp_path, first + second)

    assert rows == [(2, "r0", None), (3, "r1", None), (5, "r2", None)]


def test_the_column_of_damage_counts_text_already_read(tmp_path: Path) -> None:
    records = [{"id": f"r{i}", "text": "x" * 100} for i in range(2000)]
    content = json.dumps(records)
    at = content.index('{"id": "r1500"')
    content = content[:at] + "@" + content[at + 1 :]

    rows = _rows(_drop_with(tmp_path, "items.json", content))

    assert rows[-1]["detail"] == f"Expecting value: line 1 column {at + 1}"
    assert len(rows) == 1501


_JSON_DOCUMENTS = [
    _scrapy_feed([json.dumps(r, ensure_ascii=False) for r in _JSON_RECORDS]).replace("0", "é"),
    json.dumps([1.5, 1e5, -1.25e-3, "é€𝄞", None, True, float("-inf"), {"id": "a", "text": "b"}]),
    json.dumps(_JSON_RECORDS, indent=2).replace('"review 1"', '"review 1" oops'),
    _scrapy_feed(['{"id": "x", "text": "cut', json.dumps(_JSON_RECORDS[0]), "[1, 2"]),
    json.dumps(_JSON_RECORDS).replace('"review 1"', '"review 1" oops'),
    "\n".join(json.dumps(r) for r in _JSON_RECORDS) + '\n{"id": "t", "text": ',
    "[\n" + "[" * 3000 + "]" * 3000 + ",\n" + json.dumps(_JSON_RECORDS[0]) + "\n] trailing",
]


@pytest.mark.parametrize("document", range(len(_JSON_DOCUMENTS)))
def test_json_rows_do_not_depend_on_how_the_file_is_read_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: int
) -> None:
    """Values split across reads (a number at "1.", a character's bytes, a literal) and text
    dropped from the buffer give the same rows, line numbers and details as one read."""
    from annotation_assets.core.ingest import json_rows

    data = _JSON_DOCUMENTS[document].encode() + b'\n{"id": "bad", "text": "\xff"}'
    drop = _drop_with(tmp_path, "items.json", data)

    def read() -> list[tuple[Any, ...]]:
        return [
            (r["line_no"], r["record_id"], r["error"], r["detail"], r["payload"], r["meta"])
            for r in _rows(drop)
        ]

    whole = read()
    assert whole[-1][2] in (INVALID_UTF8, MALFORMED_JSON)
    for piece, forget in ((1, 0), (2, 3), (3, 7), (5, 64), (7, 1)):
        monkeypatch.setattr(json_rows, "_JSON_READ_PIECE", piece)
        monkeypatch.setattr(json_rows, "_JSON_FORGET_AFTER", forget)
        assert read() == whole, (piece, forget)


@pytest.mark.parametrize("name", ["part.jsonl.gz", "part.csv.gz", "part.json.gz"])
def test_a_corrupt_deflate_stream_is_unreadable_not_a_crash(tmp_path: Path, name: str) -> None:
    """A gzip member whose deflate data is damaged raises zlib.error (not an OSError)."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    drop = _drop_with(tmp_path, name, header + b"\xff\xff\xff\xff")

    row = _only_row(drop)

    assert row["error"] == UNREADABLE_FILE
    assert "invalid block type" in row["detail"]


def test_a_truncated_gzipped_json_feed_keeps_the_elements_before_the_cut(tmp_path: Path) -> None:
    records = [{"id": f"r{i}", "text": "y" * 50} for i in range(3000)]
    whole = gzip.compress(_scrapy_feed([json.dumps(r) for r in records]).encode(), mtime=0)
    rows = _rows(_drop_with(tmp_path, "items.json.gz", whole[: len(whole) // 2]))

    kept = [r["record_id"] for r in rows if r["error"] is None]
    assert kept == [f"r{i}" for i in range(len(kept))]
    assert len(kept) > 500
    assert rows[-1]["error"] == UNREADABLE_FILE
    assert "EOFError" in rows[-1]["detail"]


# ------------------------------------------------------------------ chunking


def test_chunks_split_rows_by_chunk_size(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(25))
    drop = _drop_with(tmp_path, "part.jsonl", lines)

    chunks = list(iter_raw_chunks(drop, chunk_size=10))

    assert [len(c) for c in chunks] == [10, 10, 5]
    assert list(pd.concat(chunks)["record_id"]) == [str(i) for i in range(25)]


# ------------------------------------------------------------------ reason codes


def test_malformed_json_is_quarantined(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"id": 1, "text": ') == MALFORMED_JSON


def test_bad_line_keeps_its_payload_verbatim(tmp_path: Path) -> None:
    line = '{"id": 1,  "text": "trailing comma",}'
    drop = _drop_with(tmp_path, "part.jsonl", f'{{"id": 0, "text": "ok"}}\n{line}\n')

    bad = _rows(drop)[1]

    assert (bad["error"], bad["line_no"], bad["payload"]) == (MALFORMED_JSON, 2, line)


def test_json_array_line_is_not_an_object(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '[{"id": 1, "text": "x"}]') == NOT_AN_OBJECT


def test_json_string_line_is_not_an_object(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '"just a string"') == NOT_AN_OBJECT


def test_invalid_utf8_line_is_quarantined_and_the_next_line_is_read(tmp_path: Path) -> None:
    content = b'{"id": "a", "text": "caf\xe9"}\n{"id": "b", "text": "fine"}\n'
    drop = _drop_with(tmp_path, "part.jsonl", content)

    rows = _rows(drop)

    assert [(r["error"], r["record_id"]) for r in rows] == [(INVALID_UTF8, None), (None, "b")]
    assert rows[0]["payload"] == '{"id": "a", "text": "caf\\xe9"}'


def test_line_over_max_line_bytes_is_too_long(tmp_path: Path) -> None:
    line = json.dumps({"id": "a", "text": "x" * 200})

    assert _jsonl_error(tmp_path, line, max_line_bytes=100) == LINE_TOO_LONG


def test_csv_line_over_max_line_bytes_is_too_long(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", f"id,text\n1,{'x' * 200}\n2,short\n")

    rows = _rows(drop, max_line_bytes=100)

    assert [(r["line_no"], r["error"]) for r in rows] == [(2, LINE_TOO_LONG), (3, None)]


def test_ten_megabyte_line_is_too_long_without_being_parsed(tmp_path: Path) -> None:
    line = json.dumps({"id": "big", "text": "x" * 10_000_000})

    row = _only_row(_drop_with(tmp_path, "part.jsonl", line + "\n"))

    assert (row["error"], row["record_id"], row["text"]) == (LINE_TOO_LONG, None, None)
    assert row["detail"] == f"{len(line)} bytes"


def test_deeply_nested_json_is_malformed_not_a_crash(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, "[" * 100_000) == MALFORMED_JSON


def test_csv_row_with_wrong_field_count_is_malformed(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", "id,text\n1,a,extra\n2\n3,ok\n")

    rows = _rows(drop)

    assert [(r["line_no"], r["error"]) for r in rows] == [
        (2, MALFORMED_CSV),
        (3, MALFORMED_CSV),
        (4, None),
    ]
    assert rows[0]["detail"] == "3 fields, header has 2"


def test_csv_unclosed_quote_quarantines_its_line_only(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", 'id,text\n1,"never closed\n2,after\n3,"quoted"\n')

    rows = _rows(drop)

    assert [(r["line_no"], r["error"], r["record_id"]) for r in rows] == [
        (2, MALFORMED_CSV, None),
        (3, None, "2"),
        (4, None, "3"),
    ]
    assert rows[0]["payload"] == '1,"never closed'


def test_missing_id_is_quarantined(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"text": "no id here"}') == MISSING_ID


def test_empty_id_is_missing(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"id": "  ", "text": "blank id"}') == MISSING_ID


def test_object_id_is_invalid(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"id": {"n": 1}, "text": "x"}') == INVALID_ID


def test_whole_float_ids_are_integers_and_other_floats_are_refused_with_why(
    tmp_path: Path,
) -> None:
    lines = [
        '{"id": 10.0, "text": "whole"}',
        '{"id": -3.0, "text": "negative whole"}',
        '{"id": 2.5, "text": "fraction"}',
        '{"id": 1e300, "text": "huge"}',
        '{"id": 9007199254740993.0, "text": "past 2**53"}',
        '{"id": NaN, "text": "nan is missing"}',
        '{"id": 7, "text": "int"}',
    ]
    rows = _rows(_drop_with(tmp_path, "part.jsonl", "\n".join(lines) + "\n"))
    got = [(r["record_id"], r["error"]) for r in rows]
    assert got == [
        ("10", None),
        ("-3", None),
        (None, INVALID_ID),
        (None, INVALID_ID),
        (None, INVALID_ID),
        (None, MISSING_ID),
        ("7", None),
    ]
    assert rows[2]["detail"] == "field 'id': float 2.5 is not a whole number"
    assert "2**53" in rows[4]["detail"]


def test_a_pandas_integer_id_column_with_a_gap_keeps_its_ids(tmp_path: Path) -> None:
    # pandas stores an int column holding None as float64: 10.0, 11.0, NaN
    frame = pd.DataFrame({"id": [10, 11, None], "text": ["server down", "hello", "no id"]})
    drop = tmp_path / "drop"
    drop.mkdir()
    frame.to_parquet(drop / "part.parquet")
    rows = _rows(drop)
    assert [(r["record_id"], r["error"]) for r in rows] == [
        ("10", None),
        ("11", None),
        (None, MISSING_ID),
    ]


def test_a_header_that_does_not_match_the_spec_fields_shows_in_the_detail(
    tmp_path: Path,
) -> None:
    drop = _drop_with(tmp_path, "part.csv", "ticket;body\nt1;hello\n")
    row = _only_row(drop)
    assert (row["error"], row["detail"]) == (
        MISSING_ID,
        "field 'id' absent; the record has ticket, body",
    )
    drop = _drop_with(
        tmp_path, "other.jsonl", '{"id": "a", "body": "x"}\n{"id": "b", "text": " "}\n'
    )
    rows = [r for r in _rows(drop) if r["source_file"] == "other.jsonl"]
    assert [(r["error"], r["detail"]) for r in rows] == [
        (MISSING_TEXT, "field 'text' absent; the record has id, body"),
        (MISSING_TEXT, "field 'text'"),  # present but blank
    ]


def test_a_repeated_csv_column_keeps_every_value(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", "id,text,text,note,text.1\na,first,second,n,x\n")
    row = _only_row(drop)
    assert (row["record_id"], row["text"], row["error"]) == ("a", "first", None)
    assert json.loads(row["meta"]) == {"text.2": "second", "note": "n", "text.1": "x"}


def test_a_key_with_a_lone_surrogate_in_the_detail_is_made_storable(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"\\ud800": 1, "text": "no id"}\n')
    row = _only_row(drop)
    assert row["error"] == MISSING_ID
    assert not has_surrogates(row["detail"]) and "absent" in row["detail"]
    row["detail"].encode("utf-8")


def test_a_bool_id_says_why_it_is_refused(tmp_path: Path) -> None:
    row = _only_row(_drop_with(tmp_path, "part.jsonl", '{"id": true, "text": "x"}\n'))
    assert (row["error"], row["detail"]) == (
        INVALID_ID,
        "field 'id': a bool is not an id (a string or a number is)",
    )


def test_id_longer_than_512_chars_is_invalid(tmp_path: Path) -> None:
    line = json.dumps({"id": "x" * 513, "text": "long id"})

    assert _jsonl_error(tmp_path, line) == INVALID_ID


def test_id_of_512_chars_is_kept(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", json.dumps({"id": "x" * 512, "text": "t"}) + "\n")

    assert _only_row(drop)["record_id"] == "x" * 512


@pytest.mark.parametrize(
    "line",
    ['{"id": "a"}', '{"id": "a", "text": ""}', '{"id": "a", "text": " \\n\\t "}'],
    ids=["absent", "empty", "whitespace"],
)
def test_missing_text_is_quarantined(tmp_path: Path, line: str) -> None:
    assert _jsonl_error(tmp_path, line) == MISSING_TEXT


def test_numeric_text_is_invalid(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"id": "a", "text": 12.5}') == INVALID_TEXT


def test_quarantined_record_keeps_its_id(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl", '{"id": "a", "text": ""}\n')

    assert _only_row(drop)["record_id"] == "a"


def test_random_bytes_named_parquet_are_unreadable(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.parquet", random.Random(0).randbytes(4096))

    row = _only_row(drop)

    assert (row["error"], row["source_file"]) == (UNREADABLE_FILE, "part.parquet")


def test_truncated_parquet_is_unreadable(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"id": list(range(100)), "text": ["t"] * 100}), whole)
    data = whole.read_bytes()
    drop = _drop_with(tmp_path, "part.parquet", data[: len(data) // 2])

    assert _only_row(drop)["error"] == UNREADABLE_FILE


def test_corrupt_gzip_is_unreadable(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.jsonl.gz", b"not gzip at all\n")

    assert _only_row(drop)["error"] == UNREADABLE_FILE


def test_text_file_is_unsupported(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "notes.txt", "id,text\n1,hello\n")

    row = _only_row(drop)

    assert (row["error"], row["source_file"]) == (UNSUPPORTED_FILE, "notes.txt")


def test_symlink_to_a_file_outside_the_drop_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text('{"id": "s", "text": "secret"}\n')
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "link.jsonl").symlink_to(outside)

    row = _only_row(drop)

    assert (row["error"], row["text"], row["payload"]) == (OUTSIDE_DROP, None, None)


def test_symlink_to_a_file_inside_the_drop_is_read(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "data").mkdir(parents=True)
    (drop / "data" / "real.jsonl").write_text('{"id": "r", "text": "inside"}\n')
    (drop / "link.jsonl").symlink_to(drop / "data" / "real.jsonl")

    assert [(r["source_file"], r["error"]) for r in _rows(drop)] == [
        ("data/real.jsonl", None),
        ("link.jsonl", None),
    ]


# ------------------------------------------------------------------ hostile input regressions


def test_symlink_loop_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.jsonl").symlink_to("b.jsonl")
    (drop / "b.jsonl").symlink_to("a.jsonl")

    rows = _rows(drop)

    assert [(r["source_file"], r["error"], r["detail"]) for r in rows] == [
        ("a.jsonl", UNREADABLE_FILE, "symlink loop"),
        ("b.jsonl", UNREADABLE_FILE, "symlink loop"),
    ]


def test_file_name_that_is_not_utf8_is_refused_with_its_bytes_escaped(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / os.fsdecode(b"bad\xffname.jsonl")).write_text('{"id": "a", "text": "x"}\n')

    row = _only_row(drop)

    assert (row["source_file"], row["error"]) == ("bad\\xffname.jsonl", UNSUPPORTED_FILE)
    assert row["detail"] == BAD_NAME


def test_lone_surrogate_escape_in_id_is_invalid(tmp_path: Path) -> None:
    assert _jsonl_error(tmp_path, '{"id": "a\\ud800", "text": "x"}') == INVALID_ID


def test_lone_surrogates_in_text_and_meta_become_storable(tmp_path: Path) -> None:
    line = '{"id": "a", "text": "half \\ud83d emoji", "m": "x\\udc00", "k\\ud800": 1}'
    row = _only_row(_drop_with(tmp_path, "part.jsonl", line + "\n"))

    assert (row["error"], row["text"]) == (None, "half  emoji")
    assert row["payload"] == line
    for value in (row["text"], row["meta"]):
        value.encode("utf-8")
    with duckdb.connect() as conn:
        extracted = conn.execute("SELECT json_extract_string(?, '$.m')", [row["meta"]]).fetchone()
    assert extracted == ("x\ufffd",)


def test_csv_bare_carriage_return_in_unquoted_field_is_malformed(tmp_path: Path) -> None:
    drop = _drop_with(tmp_path, "part.csv", "id,text\n1,a\rb\n2,after\n")

    rows = _rows(drop)

    assert [(r["line_no"], r["error"], r["record_id"]) for r in rows] == [
        (2, MALFORMED_CSV, None),
        (3, None, "2"),
    ]


def test_a_hand_written_refused_objects_list_is_never_fatal(tmp_path: Path) -> None:
    """`_refused_objects.jsonl` is written by S3 staging, but it sits in the drop: lines that
    are not {"key", "reason"} objects are quarantined as they are, not trusted or fatal."""
    lines = [
        b'{"key": "drops/d1/../x.jsonl", "reason": "escapes the drop"}',
        b"{broken",
        b"[1, 2]",
        b'{"key": "k"}',
        b'{"key": 3, "reason": "r"}',
        b'{"key": "bad\xff", "reason": "r"}',
        b'{"key": "k\\ud800", "reason": "surrogate"}',
    ]
    drop = _drop_with(tmp_path, "_refused_objects.jsonl", b"\n".join(lines) + b"\n")

    rows = _rows(drop)

    assert [r["error"] for r in rows] == [
        OUTSIDE_DROP,
        MALFORMED_JSON,
        MALFORMED_JSON,
        MALFORMED_JSON,
        MALFORMED_JSON,
        OUTSIDE_DROP,
        OUTSIDE_DROP,
    ]
    assert rows[0]["source_file"] == "drops/d1/../x.jsonl"
    assert rows[1]["line_no"] == 2
    for row in rows:  # storable: no lone surrogates
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")


# ------------------------------------------------------------------ record paths

WRAPPED = """{"meta": {"page": 1, "note": "] and }"}, "data": {"count": 2, "results": [
  {"id": "a", "text": "one"},
  {"id": "b", "text": "two"}
], "after": {"z": [1, {"y": "]"}]}}, "next": null}
{"data": {"results": [{"id": "c", "text": "three"}]}}
"""
RESULTS = FieldMap(records=("data", "results"))


def test_a_wrapped_json_feed_is_read_from_its_record_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annotation_assets.core.ingest import json_rows

    drop = _drop_with(tmp_path, "feed.json", WRAPPED)

    def read() -> list[tuple[Any, ...]]:
        return [
            (r["line_no"], r["record_id"], r["text"], r["error"])
            for r in _rows(drop, fields=RESULTS)
        ]

    whole = read()
    assert whole == [(2, "a", "one", None), (3, "b", "two", None), (5, "c", "three", None)]
    for piece, forget in ((1, 0), (3, 7), (7, 1)):  # values split across reads
        monkeypatch.setattr(json_rows, "_JSON_READ_PIECE", piece)
        monkeypatch.setattr(json_rows, "_JSON_FORGET_AFTER", forget)
        assert read() == whole, (piece, forget)
    # without the path the wrapper is one record without an id or text
    assert [r["error"] for r in _rows(drop)] == ["missing_id", "missing_id"]


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ('{"data": {"items": []}}', "no data.results"),
        ('{"data": {"results": {"id": 1}}}', "data.results is not an array"),
        ('{"data": [1]}', "data is not an object"),
        ('{"data": {"results": [{"id": "a", "text": "x"}]', "the file ends inside the object"),
    ],
)
def test_a_wrapper_without_the_record_path_is_quarantined_with_the_reason(
    tmp_path: Path, content: str, detail: str
) -> None:
    rows = _rows(_drop_with(tmp_path, "feed.json", content), fields=RESULTS)
    errors = [(r["error"], r["detail"]) for r in rows if r["error"]]
    expected = RECORDS_NOT_FOUND if "ends inside" not in detail else MALFORMED_JSON
    assert errors == [(expected, detail)], rows
    assert all(len(str(r["payload"])) <= 200 for r in rows if r["error"])


def test_jsonl_wrappers_are_read_line_by_line_from_the_record_path(tmp_path: Path) -> None:
    lines = [
        {"data": {"results": [{"id": "a", "text": "one"}, "not a record"]}},
        {"data": {"next": 2}},
        {"data": {"results": [{"id": "b", "text": "two"}]}},
    ]
    drop = _drop_with(tmp_path, "pages.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    rows = [
        (r["line_no"], r["record_id"], r["error"], r["detail"]) for r in _rows(drop, fields=RESULTS)
    ]
    assert rows == [
        (1, "a", None, None),
        (1, None, NOT_AN_OBJECT, "str"),
        (2, None, RECORDS_NOT_FOUND, "no data.results"),
        (3, "b", None, None),
    ]


# ------------------------------------------------------------------ bounded cost

GIANT = 40 << 20  # bytes of one line (40 MiB); gzip makes it about 40 kB


def _giant_drop(tmp_path: Path, name: str) -> Path:
    """A compressed file whose middle line expands to GIANT bytes, between two records."""
    drop = tmp_path / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    csv_file = name.removesuffix(".gz").endswith(".csv")
    first, last = (
        ("id,text\na,first\n", "b,last\n")
        if csv_file
        else (
            '{"id": "a", "text": "first"}\n',
            '{"id": "b", "text": "last"}\n',
        )
    )
    with gzip.open(drop / name, "wb", compresslevel=1) as fh:
        fh.write(first.encode())
        block = b"x" * (1 << 20)
        for _ in range(GIANT // len(block)):
            fh.write(block)
        fh.write(b"\n" + last.encode())
    return drop


@pytest.mark.parametrize("name", ["records.jsonl.gz", "records.csv.gz"])
def test_a_line_that_expands_enormously_costs_only_its_prefix(tmp_path: Path, name: str) -> None:
    rows = _rows(_giant_drop(tmp_path, name))
    good = [(r["record_id"], r["text"]) for r in rows if r["error"] is None]
    [bad] = [r for r in rows if r["error"] is not None]
    assert good == [("a", "first"), ("b", "last")]  # the record after it is read too
    assert bad["error"] == LINE_TOO_LONG and bad["detail"] == f"{GIANT} bytes"
    assert len(bad["payload"]) <= 4096 and bad["payload"].startswith("xxxx")


PEAK_CHILD = """
import resource, sys
from pathlib import Path
from annotation_assets.core.ingest import iter_raw_chunks
rows = sum(len(chunk) for chunk in iter_raw_chunks(Path(sys.argv[1])))
print(rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_of_reading_such_a_drop_stays_near_a_normal_ones(tmp_path: Path) -> None:
    import subprocess
    import sys

    def peak_kib(drop: Path) -> int:
        p = subprocess.run(
            [sys.executable, "-c", PEAK_CHILD, str(drop)], capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr[-2000:]
        rows, peak = p.stdout.split()
        assert int(rows) == 3
        return int(peak)

    normal = tmp_path / "normal"
    normal.mkdir()
    lines = [
        '{"id": "a", "text": "first"}',
        '{"id": "m", "text": "middle"}',
        '{"id": "b", "text": "last"}',
    ]
    with gzip.open(normal / "records.jsonl.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    giant = _giant_drop(tmp_path / "g", "records.jsonl.gz")
    # a line of 40 MiB (and max_line_bytes of 1 MB) costs at most a few MiB more than none
    assert peak_kib(giant) - peak_kib(normal) < 8 * 1024


def test_damage_inside_a_wrapper_never_takes_another_array_for_the_records(
    tmp_path: Path,
) -> None:
    feed = """{
  "data": [
    {"id": "1", "text": "a"},
    {"id": "2", "text": b}
  ],
  "included": [
    {"id": "9", "text": "not a record"}
  ]
}
{"data": [{"id": "3", "text": "c"}]}
"""
    rows = _rows(_drop_with(tmp_path, "feed.json", feed), fields=FieldMap(records=("data",)))
    assert [r["record_id"] for r in rows if r["error"] is None] == ["1", "3"]
    [bad] = [r for r in rows if r["error"]]
    assert bad["error"] == MALFORMED_JSON and bad["line_no"] == 4
    assert "not a record" in bad["payload"]  # kept in the damaged row, never a record


def test_a_wrapper_without_records_costs_only_itself(tmp_path: Path) -> None:
    pages = [
        {"data": {"results": None}},
        *({"data": {"results": [{"id": f"r{i}", "text": "x"}]}} for i in range(3)),
    ]
    drop = _drop_with(tmp_path, "feed.json", "\n".join(json.dumps(x) for x in pages) + "\n")
    rows = _rows(drop, fields=RESULTS)
    assert [(r["error"], r["record_id"]) for r in rows] == [
        (RECORDS_NOT_FOUND, None),
        (None, "r0"),
        (None, "r1"),
        (None, "r2"),
    ]


def test_a_jsonl_wrapper_payload_is_stored_as_utf8(tmp_path: Path) -> None:
    line = '{"data": {"results": [{"id": "1", "text": "a", "m": "\\ud800"}]}}'
    [row] = _rows(_drop_with(tmp_path, "pages.jsonl", line + "\n"), fields=RESULTS)
    assert row["error"] is None and not has_surrogates(row["payload"])


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_line_of_exactly_the_limit_is_whole_with_a_bom_and_any_line_ending(
    tmp_path: Path, ending: str
) -> None:
    head = '{"id": "a", "text": "'
    line = head + "x" * (1024 - len(head) - 2) + '"}'
    assert len(line) == 1024
    content = b"\xef\xbb\xbf" + (line + ending + '{"id": "b", "text": "y"}' + ending).encode()
    rows = _rows(_drop_with(tmp_path, "part.jsonl", content), max_line_bytes=1024)
    assert [(r["line_no"], r["record_id"], r["error"]) for r in rows] == [
        (1, "a", None),
        (2, "b", None),
    ]
