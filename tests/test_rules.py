"""Labeling functions: keyword patterns, the label matrix, vote combination and the summary."""

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_assets.core.rules import (
    ABSTAIN,
    LabelingFunction,
    apply_labeling_functions,
    build_labeling_functions,
    combine_rule_votes,
    keywords_pattern,
    rule_summary,
)
from annotation_assets.core.spec import parse_task_spec
from annotation_assets.stages import rules as rules_stage
from annotation_assets.stages.ingest import ingest_drop
from annotation_assets.stages.normalize import normalize_drop
from resources.warehouse import Warehouse
from tests.conftest import write_jsonl

LABELS = ["negative", "neutral", "positive"]


def _lfs(*rules: dict[str, Any]) -> list[LabelingFunction]:
    spec = parse_task_spec(
        {"name": "t", "kind": "text_classification", "labels": LABELS, "rules": list(rules)}
    )
    return build_labeling_functions(spec)


def _keywords(name: str, words: list[str], label: str, confidence: float = 0.9) -> dict[str, Any]:
    return {
        "name": name,
        "type": "keywords",
        "words": words,
        "label": label,
        "confidence": confidence,
    }


def _matrix(texts: list[str | None], *rules: dict[str, Any]) -> np.ndarray:
    return apply_labeling_functions(pd.DataFrame({"text": texts}), _lfs(*rules))


def _re2_matches(pattern: str, text: str) -> bool:
    return bool(pc.match_substring_regex(pa.array([text], pa.string()), pattern)[0].as_py())


def _lf(name: str, label_index: int, confidence: float = 0.9) -> LabelingFunction:
    return LabelingFunction(
        name=name,
        label=LABELS[label_index],
        label_index=label_index,
        confidence=confidence,
        field="text",
        kind="keywords",
        pattern=keywords_pattern([name]),
    )


# ------------------------------------------------------------------ keyword patterns


@pytest.mark.parametrize(
    ("words", "text", "expected"),
    [
        (["love it"], "Love it, works great", True),
        (["love"], "I LOVE this", True),
        (["love"], "a warm glove", False),
        (["love"], "lovely colour", False),
        (["love"], "love_it", False),
        (["love it"], "love \t\n it", True),
        (["love it"], "loveit", False),
        (["5/5"], "rated 5/5, would buy", True),
        (["5/5"], "rated 15/5", False),
        (["A+"], "an A+ seller", True),
        (["A+"], "a+", True),
        (["A+"], "AA+ battery", False),
        (["café"], "Café!", True),
    ],
)
def test_keywords_pattern_matches_whole_words_any_case(
    words: list[str], text: str, expected: bool
) -> None:
    assert _re2_matches(keywords_pattern(words), text) is expected


def test_keywords_pattern_matches_any_of_several_words_or_phrases() -> None:
    pattern = keywords_pattern(["refund", "not good"])

    assert _re2_matches(pattern, "I want a refund")
    assert _re2_matches(pattern, "not   good at all")
    assert not _re2_matches(pattern, "refunds are slow, but good")


# ------------------------------------------------------------------ label matrix


def test_matrix_holds_label_index_where_a_rule_fires_and_abstain_elsewhere() -> None:
    matrix = _matrix(
        ["love it", "meh", "awful, want a refund", None],
        _keywords("praise", ["love"], "positive"),
        _keywords("complaint", ["awful", "refund"], "negative"),
    )

    assert matrix.tolist() == [[2, ABSTAIN], [ABSTAIN, ABSTAIN], [ABSTAIN, 0], [ABSTAIN, ABSTAIN]]


def test_matrix_is_int16_with_one_column_per_rule() -> None:
    matrix = _matrix(["a", "b"], _keywords("k", ["a"], "neutral"))

    assert (matrix.dtype, matrix.shape) == (np.dtype(np.int16), (2, 1))


def test_empty_frame_gives_empty_matrix() -> None:
    matrix = _matrix([], _keywords("k", ["a"], "neutral"))

    assert matrix.shape == (0, 1)


def test_regex_rule_honours_case_insensitive_flag() -> None:
    rule = {"name": "refund", "type": "regex", "pattern": r"(?i)\brefund\b", "label": "negative"}

    assert _matrix(["REFUND please", "refunded"], rule)[:, 0].tolist() == [0, ABSTAIN]


def test_regex_rule_runs_in_re2_syntax() -> None:
    # \p{Greek} is RE2 syntax that Python's re does not know.
    rule = {"name": "greek", "type": "regex", "pattern": r"\p{Greek}+", "label": "neutral"}

    assert _matrix(["καλό προϊόν", "good product"], rule)[:, 0].tolist() == [1, ABSTAIN]


def test_rule_on_another_field_reads_that_column() -> None:
    rule = {**_keywords("title_praise", ["love"], "positive"), "field": "title"}
    frame = pd.DataFrame({"text": ["love it", "fine"], "title": ["so-so", "I love it"]})

    assert apply_labeling_functions(frame, _lfs(rule))[:, 0].tolist() == [ABSTAIN, 2]


def test_rule_on_a_missing_column_abstains() -> None:
    rule = {**_keywords("title_praise", ["love"], "positive"), "field": "title"}

    assert _matrix(["love it"], rule)[:, 0].tolist() == [ABSTAIN]


def test_lexicon_rules_fire_on_vader_compound_bands() -> None:
    rules = [
        {"name": "pos", "type": "lexicon_sentiment", "min": 0.5, "label": "positive"},
        {"name": "neg", "type": "lexicon_sentiment", "max": -0.5, "label": "negative"},
    ]
    texts = [
        "I love this, it is wonderful and works great!",
        "This is terrible, awful and I hate it.",
        "The box is brown.",
        None,
    ]

    assert _matrix(texts, *rules).tolist() == [
        [2, ABSTAIN],
        [ABSTAIN, 0],
        [ABSTAIN, ABSTAIN],
        [ABSTAIN, ABSTAIN],
    ]


# ------------------------------------------------------------------ combining votes


def test_agreeing_rules_give_their_label_at_the_highest_confidence() -> None:
    lfs = [_lf("a", 2, 0.7), _lf("b", 2, 0.95)]

    votes = combine_rule_votes(np.array([[2, 2]]), lfs, n_labels=3)

    assert (votes.label_index[0], votes.confidence[0], votes.conflict[0]) == (2, 0.95, False)


def test_a_single_firing_rule_gives_its_label_and_confidence() -> None:
    lfs = [_lf("a", 0, 0.8), _lf("b", 2, 0.95)]

    votes = combine_rule_votes(np.array([[0, ABSTAIN]]), lfs, n_labels=3)

    assert (votes.label_index[0], votes.confidence[0]) == (0, 0.8)


def test_disagreeing_rules_give_no_label_and_a_conflict() -> None:
    lfs = [_lf("a", 0, 0.8), _lf("b", 2, 0.95)]

    votes = combine_rule_votes(np.array([[0, 2]]), lfs, n_labels=3)

    assert (votes.label_index[0], votes.confidence[0], votes.conflict[0]) == (ABSTAIN, 0.0, True)


def test_no_firing_rule_gives_no_label_without_conflict() -> None:
    lfs = [_lf("a", 0), _lf("b", 2)]

    votes = combine_rule_votes(np.array([[ABSTAIN, ABSTAIN]]), lfs, n_labels=3)

    assert (votes.label_index[0], votes.confidence[0], votes.conflict[0]) == (ABSTAIN, 0.0, False)


# ------------------------------------------------------------------ summary

# Rules r0 (label 0), r1 (label 0), r2 (label 1) over five records.
SUMMARY_MATRIX = np.array(
    [
        [0, 0, -1],  # r0 and r1 overlap, same label
        [0, -1, 1],  # r0 and r2 overlap and conflict
        [-1, -1, 1],  # r2 alone
        [0, -1, -1],  # r0 alone
        [-1, -1, -1],  # nothing fires
    ]
)
SUMMARY_GOLD = np.array([-1, 0, 1, 0, 1])


def _summary(gold: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    lfs = [_lf("r0", 0), _lf("r1", 0), _lf("r2", 1)]
    return {str(row["rule"]): row for row in rule_summary(SUMMARY_MATRIX, lfs, gold=gold)}


def test_summary_coverage_is_the_share_of_records_a_rule_fires_on() -> None:
    summary = _summary()

    assert [summary[r]["fired"] for r in ("r0", "r1", "r2")] == [3, 1, 2]
    assert [summary[r]["coverage"] for r in ("r0", "r1", "r2")] == [0.6, 0.2, 0.4]


def test_summary_overlap_counts_records_where_another_rule_also_fires() -> None:
    summary = _summary()

    assert [summary[r]["overlap"] for r in ("r0", "r1", "r2")] == [0.4, 0.2, 0.2]


def test_summary_conflict_counts_only_rules_of_another_label() -> None:
    summary = _summary()

    assert [summary[r]["conflict"] for r in ("r0", "r1", "r2")] == [0.2, 0.0, 0.2]


def test_summary_accuracy_uses_only_known_gold_labels() -> None:
    summary = _summary(SUMMARY_GOLD)

    # r0 fires on rows 0, 1, 3; gold is unknown on row 0 and 0 on rows 1 and 3.
    assert (summary["r0"]["accuracy"], summary["r0"]["n_gold"]) == (1.0, 2)
    # r1 fires only on row 0, whose gold is unknown.
    assert (summary["r1"]["accuracy"], summary["r1"]["n_gold"]) == (None, 0)
    # r2 fires on rows 1 (gold 0) and 2 (gold 1).
    assert (summary["r2"]["accuracy"], summary["r2"]["n_gold"]) == (0.5, 2)


def test_summary_without_gold_has_no_accuracy() -> None:
    assert all(row["accuracy"] is None for row in _summary().values())


_RANDOM_MATRICES = st.integers(1, 5).flatmap(
    lambda n_rules: st.tuples(
        st.lists(st.integers(0, 2), min_size=n_rules, max_size=n_rules),  # rule labels
        st.lists(
            st.lists(st.sampled_from([ABSTAIN, 0, 1, 2]), min_size=n_rules, max_size=n_rules),
            max_size=30,
        ),
        st.lists(st.sampled_from([ABSTAIN, 0, 1, 2]), min_size=30, max_size=30),  # gold
    )
)


@settings(max_examples=80, deadline=None)
@given(_RANDOM_MATRICES)
def test_summary_and_votes_equal_a_record_by_record_count(case: Any) -> None:
    # matrices may hold votes of another label than the rule's (a hand-made matrix can)
    labels, rows, gold_all = case
    lfs = [_lf(f"r{j}", label, 0.5 + 0.1 * j) for j, label in enumerate(labels)]
    matrix = np.array(rows, dtype=np.int16).reshape(len(rows), len(labels))
    gold = np.array(gold_all[: len(rows)])

    summary = rule_summary(matrix, lfs, gold=gold)
    votes = combine_rule_votes(matrix, lfs, n_labels=3)

    n = max(len(rows), 1)
    for j, (lf, row) in enumerate(zip(lfs, summary, strict=True)):
        mine = [r for r in range(len(rows)) if rows[r][j] != ABSTAIN]
        overlap = [r for r in mine if sum(v != ABSTAIN for v in rows[r]) > 1]
        conflict = [
            r
            for r in mine
            if any(v not in (ABSTAIN, lf.label_index) for k, v in enumerate(rows[r]) if k != j)
        ]
        known = [r for r in mine if gold[r] != ABSTAIN]
        assert row["fired"] == len(mine)
        assert row["overlap"] == len(overlap) / n
        assert row["conflict"] == len(conflict) / n
        assert row["n_gold"] == len(known)
        if known:
            assert row["accuracy"] == sum(gold[r] == lf.label_index for r in known) / len(known)
    for r, row_votes in enumerate(rows):
        best: dict[int, float] = {}
        for lf, v in zip(lfs, row_votes, strict=True):
            if v == lf.label_index:
                best[v] = max(best.get(v, 0.0), lf.confidence)
        agreed = len(best) == 1
        assert votes.label_index[r] == (next(iter(best)) if agreed else ABSTAIN)
        assert votes.confidence[r] == (next(iter(best.values())) if agreed else 0.0)
        assert votes.conflict[r] == (len(best) > 1)


# ------------------------------------------------------------------ property

PROPERTY_RULES: list[tuple[str, list[str], str]] = [
    ("praise", ["love", "great"], "positive"),
    ("meh", ["ok", "fine"], "neutral"),
    ("complaint", ["bad", "not great"], "negative"),
    ("refund", ["refund"], "negative"),
]
PROPERTY_LFS = _lfs(*(_keywords(n, w, label) for n, w, label in PROPERTY_RULES))
# Texts from ASCII words and separators, where RE2's \pL\pN and \s agree with Python's \w, \s.
WORDS = ["love", "LOVE", "glove", "great", "ok", "okay", "fine", "bad", "not", "refund", "x"]
SEPARATORS = [" ", "  ", "\t", "\n", ",", ".", "!", "_", "-", ""]
texts_st = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8).map(
    lambda parts: "".join(w + s for w, s in parts)
)


def _python_pattern(words: list[str]) -> re.Pattern[str]:
    return re.compile(keywords_pattern(words).replace(r"[^\pL\pN_]", r"\W"))


PYTHON_PATTERNS = [_python_pattern(words) for _, words, _ in PROPERTY_RULES]


@settings(max_examples=60, deadline=None)
@given(st.lists(texts_st, min_size=1, max_size=20))
def test_label_matrix_equals_a_per_row_python_regex_evaluation(texts: list[str]) -> None:
    matrix = apply_labeling_functions(pd.DataFrame({"text": texts}), PROPERTY_LFS)

    expected = [
        [
            lf.label_index if p.search(t) else ABSTAIN
            for lf, p in zip(PROPERTY_LFS, PYTHON_PATTERNS, strict=True)
        ]
        for t in texts
    ]
    assert matrix.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(texts_st, min_size=1, max_size=20))
def test_combined_label_is_always_one_a_firing_rule_voted_for(texts: list[str]) -> None:
    matrix = apply_labeling_functions(pd.DataFrame({"text": texts}), PROPERTY_LFS)

    votes = combine_rule_votes(matrix, PROPERTY_LFS, n_labels=len(LABELS))

    for row, label, conflict in zip(matrix, votes.label_index, votes.conflict, strict=True):
        voted = {int(v) for v in row if v != ABSTAIN}
        assert label == ABSTAIN or label in voted
        assert conflict == (len(voted) > 1)
        assert (label != ABSTAIN) == (len(voted) == 1)


# Words and texts from any printable code points: regex and SQL metacharacters, quotes,
# backslashes, non-ASCII letters; texts may also hold NUL, controls and be missing.
_WORD = st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=8)
_HOSTILE_TEXT = st.one_of(
    st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_WORD, min_size=1, max_size=4), st.lists(_HOSTILE_TEXT, max_size=10))
def test_keywords_of_any_characters_match_literally_and_never_fail(
    words: list[str], texts: list[str | None]
) -> None:
    lf = LabelingFunction(
        name="k",
        label=LABELS[2],
        label_index=2,
        confidence=0.9,
        field="text",
        kind="keywords",
        pattern=keywords_pattern(words),
    )
    planted = [f"before {w} after" for w in words]

    matrix = apply_labeling_functions(pd.DataFrame({"text": texts + planted}), [lf])

    assert matrix.shape == (len(texts) + len(planted), 1)
    assert set(matrix[:, 0].tolist()) <= {ABSTAIN, 2}
    assert (matrix[len(texts) :, 0] == 2).all()
    assert all(matrix[i, 0] == ABSTAIN for i, t in enumerate(texts) if t is None)


def test_stage_reads_rule_fields_from_the_warehouse_as_a_frame_gives_them(tmp_path: Path) -> None:
    # The stage reads each rule's field from the stored records (meta fields too) as Arrow;
    # its votes must equal the frame path's over the same values.
    spec = parse_task_spec(
        {
            "name": "t",
            "kind": "text_classification",
            "labels": LABELS,
            "rules": [
                {**_keywords("title_love", ["love"], "positive"), "field": "title"},
                {**_keywords("refund", ["refund"], "negative", 0.8)},
                {
                    "name": "broken",
                    "type": "regex",
                    "pattern": r"(?i)\bbroke(n)?\b",
                    "label": "negative",
                    "confidence": 0.85,
                },
                {
                    "name": "vader_pos",
                    "type": "lexicon_sentiment",
                    "min": 0.5,
                    "label": "positive",
                    "confidence": 0.7,
                },
                {
                    "name": "title_neg",
                    "type": "lexicon_sentiment",
                    "field": "title",
                    "max": -0.3,
                    "label": "negative",
                    "confidence": 0.7,
                },
            ],
        }
    )
    titles = ["I love it", "awful junk", None, 7, "LOVE", "meh", "terrible, broken", "love"]
    texts = [
        "great, I love it",
        "It broke. Refund please!",
        "fine",
        "Broken and awful",
        "wonderful wonderful",
        "nothing to say",
        "refund",
        "I want a refund",  # the title says love: two labels, a conflict
    ]
    records = [
        {"id": f"r{i}", "text": text, **({} if title is None else {"title": title})}
        for i, (text, title) in enumerate(zip(texts, titles, strict=True))
    ]
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    drop_dir = write_jsonl(tmp_path / "drops" / "d1", records).parent
    ingest_drop(warehouse.connect, spec, "d1", drop_dir)
    normalize_drop(warehouse.connect, spec, "d1")

    result = rules_stage.label_by_rules(warehouse.connect, spec, "d1")

    with warehouse.connect() as conn:
        frame = conn.execute(
            "SELECT record_id, text, json_extract_string(meta, '$.title') AS title"
            " FROM t.normalized_records ORDER BY row_num"
        ).fetchdf()
        stored = conn.execute(
            "SELECT record_id, rules_fired, rule_label, rule_confidence, rule_conflict,"
            " drop_id FROM t.rule_labels ORDER BY record_id"
        ).fetchall()
    lfs = build_labeling_functions(spec)
    matrix = apply_labeling_functions(frame, lfs)
    votes = combine_rule_votes(matrix, lfs, len(LABELS))
    expected = sorted(
        (
            rid,
            [lf.name for j, lf in enumerate(lfs) if matrix[i, j] != ABSTAIN],
            LABELS[votes.label_index[i]] if votes.label_index[i] != ABSTAIN else None,
            float(votes.confidence[i]) if votes.label_index[i] != ABSTAIN else None,  # NULL
            bool(votes.conflict[i]),
            "d1",
        )
        for i, rid in enumerate(frame["record_id"])
    )
    assert [(rid, list(fired), *rest) for rid, fired, *rest in stored] == expected
    assert {row[2] for row in expected} == {None, "positive", "negative"}
    assert any(row[4] for row in expected)  # a conflict among them
    assert result.n_records == len(records)
    fired_rules = {name for _, names, *_ in expected for name in names}
    assert fired_rules == {lf.name for lf in lfs}  # every rule, pattern and lexicon, fired


def test_a_surrogate_arrow_cannot_hold_is_matched_as_one_replacement_character() -> None:
    # a lone surrogate (a Python string decoded with surrogateescape) is not UTF-8
    one = {"name": "one", "type": "regex", "pattern": r"^\x{FFFD} refund", "label": "neutral"}
    rules = (_keywords("refund", ["refund"], "negative"), one)

    matrix = _matrix(["\ud800 refund please", "fine", None], *rules)

    assert matrix.tolist() == [[0, 1], [ABSTAIN, ABSTAIN], [ABSTAIN, ABSTAIN]]


def test_pattern_rules_read_arrow_columns_in_place_with_the_same_matches() -> None:
    texts = ["I want a REFUND", None, "", "money back now", "fine", "refunds are slow"]
    pattern = r"(?i)\brefund\b|money back"
    rule = {"name": "r", "type": "regex", "pattern": pattern, "label": "negative"}
    table = pa.chunked_array([pa.array(texts[:3], pa.string()), pa.array(texts[3:], pa.string())])
    arrow_frame = pd.DataFrame({"text": pd.arrays.ArrowExtensionArray(table)})

    expected = [0, ABSTAIN, ABSTAIN, 0, ABSTAIN, ABSTAIN]
    assert apply_labeling_functions(arrow_frame, _lfs(rule))[:, 0].tolist() == expected
    assert _matrix(texts, rule)[:, 0].tolist() == expected


@pytest.mark.parametrize("n_rules", [3, 70])
def test_fired_rule_names_follow_spec_order_for_each_record(n_rules: int) -> None:
    rng = np.random.default_rng(n_rules)
    matrix = np.where(rng.random((50, n_rules)) < 0.3, 1, ABSTAIN).astype(np.int16)
    names = [f"rule{j}" for j in range(n_rules)]

    fired = rules_stage._fired_rule_lists(matrix, names).to_pylist()

    assert [list(f) for f in fired] == [
        [names[j] for j in range(n_rules) if matrix[i, j] != ABSTAIN] for i in range(50)
    ]


def test_rules_read_nested_meta_fields_and_keys_with_quotes_or_dots(tmp_path: Path) -> None:
    """A rule's `field` reads meta as ingest reads the record: a key itself first (it may hold
    dots, quotes or backslashes), else a dotted path into nested objects."""
    spec = parse_task_spec(
        {
            "name": "t",
            "kind": "text_classification",
            "labels": LABELS,
            "rules": [
                {**_keywords("nested_title", ["love"], "positive"), "field": "product.title"},
                {**_keywords("quoted_key", ["junk"], "negative"), "field": 'say "what"\\'},
                {**_keywords("dotted_key", ["meh"], "neutral"), "field": "x.y"},
                {**_keywords("empty_part", ["junk"], "negative"), "field": "No."},
            ],
        }
    )
    records = [
        {"id": "r0", "text": "one", "product": {"title": "I love it"}},
        {"id": "r1", "text": "two", 'say "what"\\': "pure junk"},
        {"id": "r2", "text": "three", "x.y": "meh", "x": {"y": "I love it"}},
        {"id": "r3", "text": "four", "x": {"y": "meh"}},
        {"id": "r4", "text": "five", "product": "love as a string, not an object"},
        {"id": "r5", "text": "six", "x.y": None, "x": {"y": "meh"}},  # the key is there: null
        {"id": "r6", "text": "seven", "No.": "junk"},  # a key only: "No." walks nowhere
    ]
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    drop_dir = write_jsonl(tmp_path / "drops" / "d1", records).parent
    ingest_drop(warehouse.connect, spec, "d1", drop_dir)
    normalize_drop(warehouse.connect, spec, "d1")

    rules_stage.label_by_rules(warehouse.connect, spec, "d1")

    with warehouse.connect() as conn:
        fired = conn.execute(
            "SELECT record_id, rules_fired FROM t.rule_labels ORDER BY record_id"
        ).fetchall()
    assert fired == [
        ("r0", ["nested_title"]),
        ("r1", ["quoted_key"]),
        ("r2", ["dotted_key"]),  # the key "x.y" itself, not x -> y
        ("r3", ["dotted_key"]),
        ("r4", []),
        ("r5", []),
        ("r6", ["empty_part"]),
    ]
