"""Tests for the synthetic scraped-review generator and drop writer."""

import csv
import difflib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tools.synthetic import (
    CUE_WORDS,
    FIELDS,
    LABELS,
    generate_reviews,
    iter_reviews,
    write_drop,
)

_CUE_RE = re.compile(
    r"(?i)(?:^|\W)(?:"
    + "|".join(re.escape(w) for ws in CUE_WORDS.values() for w in ws)
    + r")(?:$|\W)"
)


def _exact_dup_share(records: list[dict]) -> float:
    texts = [r["text"] for r in records]
    return 1 - len(set(texts)) / len(texts)


def test_same_seed_same_records() -> None:
    assert generate_reviews(500, seed=7) == generate_reviews(500, seed=7)
    assert generate_reviews(500, seed=7) != generate_reviews(500, seed=8)


def test_record_shape() -> None:
    records = generate_reviews(300, seed=1)
    for rec in records:
        assert tuple(rec) == FIELDS
        assert isinstance(rec["text"], str) and rec["text"].strip()
        assert rec["rating"] is None or rec["rating"] in range(1, 6)
        assert rec["url"].startswith("https://")
        assert rec["gold_label"] in LABELS
        pd.Timestamp(rec["scraped_at"])
    assert len({r["product"] for r in records}) >= 30


def test_ids_unique_with_prefix() -> None:
    records = generate_reviews(5000, seed=2, id_prefix="x-", duplicate_rate=0.2)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("x-") for i in ids)


def test_label_distribution() -> None:
    records = generate_reviews(10_000, seed=3)
    counts = Counter(r["gold_label"] for r in records)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) / len(records) >= 0.2


def test_cue_words_cover_part_of_records() -> None:
    records = generate_reviews(10_000, seed=4, html_rate=0.0)
    by_label: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_label[r["gold_label"]].append(bool(_CUE_RE.search(r["text"])))
    share = {k: sum(v) / len(v) for k, v in by_label.items()}
    overall = sum(sum(v) for v in by_label.values()) / len(records)
    assert 0.3 <= overall <= 0.6
    assert 0.3 <= share["positive"] <= 0.7
    assert 0.3 <= share["negative"] <= 0.7
    assert share["neutral"] <= 0.2


def test_exact_duplicates_near_configured_rate() -> None:
    base = _exact_dup_share(
        generate_reviews(10_000, seed=5, duplicate_rate=0.0, near_duplicate_rate=0)
    )
    dup = _exact_dup_share(
        generate_reviews(10_000, seed=5, duplicate_rate=0.1, near_duplicate_rate=0)
    )
    assert base < 0.03
    assert 0.08 <= dup - base <= 0.12
    default = _exact_dup_share(generate_reviews(10_000, seed=5))
    assert 0.03 <= default <= 0.08


def test_near_duplicates_present() -> None:
    records = generate_reviews(2000, seed=6, duplicate_rate=0.0, near_duplicate_rate=0.05)
    by_url: dict[str, list[str]] = defaultdict(list)
    near = 0
    for r in records:
        earlier = by_url[r["url"]]
        if any(
            t != r["text"] and difflib.SequenceMatcher(None, t, r["text"]).ratio() > 0.9
            for t in earlier
        ):
            near += 1
        earlier.append(r["text"])
    assert 0.03 * len(records) <= near <= 0.07 * len(records)


def test_html_noise_share() -> None:
    clean = generate_reviews(2000, seed=8, html_rate=0.0)
    assert not any(re.search(r"<[a-z/]|&#?\w+;|\u200b", r["text"]) for r in clean)
    noisy = generate_reviews(4000, seed=8, html_rate=0.25)
    tagged = sum(
        bool(re.search(r"</?(p|br|b|span|div|script|style|i|strong)\b", r["text"])) for r in noisy
    )
    assert 0.15 <= tagged / len(noisy) <= 0.3


def test_iter_reviews_25k() -> None:
    chunks = list(iter_reviews(25_000, seed=9, chunk_size=10_000))
    assert [len(c) for c in chunks] == [10_000, 10_000, 5_000]
    ids = [r["id"] for c in chunks for r in c]
    assert len(ids) == 25_000 == len(set(ids))
    again = next(iter_reviews(25_000, seed=9, chunk_size=10_000))
    assert again == chunks[0]


def test_iter_reviews_rejects_unknown_keyword() -> None:
    with pytest.raises(TypeError):
        next(iter_reviews(10, seed=0, html_ratio=0.1))


def _json_lines(paths: list[Path]) -> tuple[list[dict], int]:
    good, bad = [], 0
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    good.append(json.loads(line))
                except ValueError:
                    bad += 1
    return good, bad


def test_write_drop_jsonl(tmp_path: Path) -> None:
    records = generate_reviews(1000, seed=10)
    paths = write_drop(tmp_path, records, fmt="jsonl", broken_lines=4, file_rows=300, seed=1)
    assert [p.name for p in paths] == [f"part-0000{i}.jsonl" for i in range(4)]
    assert (tmp_path / "_SUCCESS").read_bytes() == b""
    assert (tmp_path / "_SUCCESS").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in paths)
    good, bad = _json_lines(paths)
    assert bad == 4
    assert [r["id"] for r in good] == [r["id"] for r in records]
    assert all("gold_label" not in r for r in good)
    assert write_drop(tmp_path / "again", records, broken_lines=4, file_rows=300, seed=1)
    again = [(tmp_path / "again" / p.name).read_bytes() for p in paths]
    assert again == [p.read_bytes() for p in paths]


def test_write_drop_jsonl_from_generator(tmp_path: Path) -> None:
    stream = (r for chunk in iter_reviews(700, seed=11, chunk_size=250) for r in chunk)
    paths = write_drop(tmp_path, stream, broken_lines=3, file_rows=400, include_gold=True)
    good, bad = _json_lines(paths)
    assert (len(good), bad) == (700, 3)
    assert all(r["gold_label"] in LABELS for r in good)


def test_write_drop_csv(tmp_path: Path) -> None:
    records = generate_reviews(500, seed=12)
    paths = write_drop(tmp_path / "clean", records, fmt="csv", include_gold=True)
    frame = pd.read_csv(paths[0], keep_default_na=False)
    assert list(frame.columns) == list(FIELDS)
    assert frame["id"].tolist() == [r["id"] for r in records]
    assert frame["text"].tolist() == [r["text"] for r in records]
    assert (tmp_path / "clean" / "_SUCCESS").exists()

    paths = write_drop(tmp_path / "broken", records, fmt="csv", broken_lines=6, seed=3)
    with paths[0].open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [c for c in FIELDS if c != "gold_label"]
    assert any(len(row) != len(rows[0]) for row in rows[1:])
    physical = paths[0].read_text(encoding="utf-8").count("\n")
    record_lines = sum(r["text"].count("\n") + 1 for r in records)
    assert physical == 1 + record_lines + 6


def test_write_drop_parquet(tmp_path: Path) -> None:
    records = generate_reviews(400, seed=13)
    records[3] = {k: v for k, v in records[3].items() if k != "text"}
    paths = write_drop(tmp_path, records, fmt="parquet", broken_lines=5, file_rows=150)
    assert [p.suffix for p in paths] == [".parquet"] * 3
    table = pq.read_table(tmp_path / "part-00000.parquet")
    assert table.schema.field("rating").type == "int64"
    frame = pd.concat(pd.read_parquet(p) for p in paths)
    assert len(frame) == 400
    assert "gold_label" not in frame.columns
    assert frame["text"].isna().sum() == 1
    assert (tmp_path / "_SUCCESS").exists()


def test_write_drop_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_drop(tmp_path, [], fmt="xml")
