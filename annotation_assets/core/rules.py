"""Labeling functions built from a task spec, applied set-wise to a batch of records.

Applying the rules gives a label matrix (records x rules) holding a label index where a rule
fires and -1 where it abstains, as in Snorkel. Rules are evaluated column-wise: regex and
keyword rules as RE2 expressions over Arrow string columns (`pyarrow.compute`), lexicon rules
from VADER compound scores computed set-wise over the whole batch (`core.sentiment`: flat token
arrays, vocabulary lookups and look-back windows instead of a Python call per record). Those
scores equal the `vader` package's per-record `polarity_scores(text)["compound"]` exactly; the
one construct the set-wise path does not reproduce (two overlapping multiword-lexicon phrases
in one text) is detected set-wise and those records alone are scored by the package itself.
"""

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from annotation_assets.core.sentiment import TextColumn, vader_compound_scores
from annotation_assets.core.spec import (
    KeywordsRule,
    LexiconSentimentRule,
    RegexRule,
    TaskSpec,
)

ABSTAIN = -1
_SURROGATE = re.compile("[\ud800-\udfff]")
_WORD_EDGE = r"[^\pL\pN_]"


@dataclass(frozen=True)
class LabelingFunction:
    """One rule: fires on a record with `label` at `confidence`."""

    name: str
    label: str
    label_index: int
    confidence: float
    field: str
    kind: str
    pattern: str | None = None
    band: tuple[float, float] | None = None


def keywords_pattern(words: Sequence[str]) -> str:
    """An RE2 pattern matching any of the words or phrases as whole words, any case, with any
    run of whitespace between the words of a phrase."""
    alts = sorted({r"\s+".join(re.escape(w) for w in word.split()) for word in words}, key=len)
    body = "|".join(reversed(alts))
    return f"(?i)(?:^|{_WORD_EDGE})(?:{body})(?:$|{_WORD_EDGE})"


def build_labeling_functions(spec: TaskSpec) -> list[LabelingFunction]:
    """One LabelingFunction per rule of the spec, in spec order."""
    index = {label: i for i, label in enumerate(spec.label_names)}
    lfs = []
    for rule in spec.rules:
        pattern: str | None = None
        band: tuple[float, float] | None = None
        if isinstance(rule, RegexRule):
            pattern = rule.pattern
        elif isinstance(rule, KeywordsRule):
            pattern = keywords_pattern(rule.words)
        elif isinstance(rule, LexiconSentimentRule):
            band = (rule.min, rule.max)
        lfs.append(
            LabelingFunction(
                name=rule.name,
                label=rule.label,
                label_index=index[rule.label],
                confidence=rule.confidence,
                field=rule.field,
                kind=rule.type,
                pattern=pattern,
                band=band,
            )
        )
    return lfs


def vader_compound(texts: TextColumn) -> np.ndarray:
    """VADER compound scores in [-1, 1], equal to the package's per-text scores; NaN for
    missing or empty text. Strings, or an Arrow string array read in place."""
    return vader_compound_scores(texts)


def apply_labeling_functions(frame: pd.DataFrame, lfs: Sequence[LabelingFunction]) -> np.ndarray:
    """The label matrix of `lfs` over `frame` (whose columns are the fields the rules read):
    one row per record, one column per rule, int16, -1 = abstain.

    Lexicon rules share one VADER score per distinct field, computed on other threads while
    the pattern rules are matched (RE2, which releases the GIL). Arrow-backed string columns
    are read in place by both."""
    n = len(frame)
    matrix = np.full((n, len(lfs)), ABSTAIN, dtype=np.int16)
    if n == 0 or not lfs:
        return matrix
    values = {name: _field_values(frame, name) for name in sorted({lf.field for lf in lfs})}
    lexicon_fields = sorted({lf.field for lf in lfs if lf.band is not None})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lexicon") as pool:
        scoring = {name: pool.submit(vader_compound, values[name]) for name in lexicon_fields}
        strings: dict[str, pa.Array | pa.ChunkedArray] = {}
        for j, lf in enumerate(lfs):
            if lf.pattern is not None:
                if lf.field not in strings:
                    strings[lf.field] = _arrow_strings(values[lf.field])
                matrix[pattern_hits(strings[lf.field], lf.pattern), j] = lf.label_index
        scores = {name: future.result() for name, future in scoring.items()}
    for j, lf in enumerate(lfs):
        if lf.band is None:
            continue
        compound = scores[lf.field]
        with np.errstate(invalid="ignore"):
            fired = (compound >= lf.band[0]) & (compound <= lf.band[1])
        matrix[fired, j] = lf.label_index
    return matrix


def pattern_hits(texts: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    """Whether the RE2 `pattern` matches somewhere in each text (missing text: no)."""
    hits = pc.match_substring_regex(texts, pattern)
    return np.asarray(hits.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _arrow_strings(values: TextColumn) -> pa.Array | pa.ChunkedArray:
    """A field's texts as an Arrow string array; a surrogate code point, which UTF-8 (and so
    Arrow) cannot hold, is matched as U+FFFD."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):
        return pa.array([_SURROGATE.sub("\ufffd", v) if v else v for v in values], pa.string())


def _field_values(frame: pd.DataFrame, field: str) -> TextColumn:
    """A field's texts: an Arrow-backed string column as its Arrow array (no Python strings
    made), any other column as strings with None for missing and non-string values."""
    if field not in frame.columns:
        return [None] * len(frame)
    column = frame[field]
    if isinstance(column.dtype, pd.ArrowDtype) and (
        pa.types.is_string(column.dtype.pyarrow_dtype)
        or pa.types.is_large_string(column.dtype.pyarrow_dtype)
    ):
        return pa.array(column)  # zero-copy for one chunk
    return [v if isinstance(v, str) else None for v in column]


@dataclass(frozen=True)
class RuleVotes:
    label_index: np.ndarray
    confidence: np.ndarray
    conflict: np.ndarray


def combine_rule_votes(
    matrix: np.ndarray, lfs: Sequence[LabelingFunction], n_labels: int
) -> RuleVotes:
    """Per record: the label all firing rules agree on, at the highest confidence among them.
    Records whose rules disagree, or where none fires, get -1 and confidence 0."""
    n = matrix.shape[0]
    best = np.zeros((n_labels, n), dtype=np.float64)  # per label, its firing rules' best
    columns = np.ascontiguousarray(matrix.T)
    for j, lf in enumerate(lfs):
        row = best[lf.label_index]
        np.maximum(row, np.where(columns[j] == lf.label_index, lf.confidence, 0.0), out=row)
    labels_fired = (best > 0).sum(axis=0)
    agreed = labels_fired == 1
    label_index = np.where(agreed, best.argmax(axis=0), ABSTAIN)
    confidence = np.where(agreed, best.max(axis=0), 0.0)
    return RuleVotes(label_index=label_index, confidence=confidence, conflict=labels_fired > 1)


def rule_summary(
    matrix: np.ndarray,
    lfs: Sequence[LabelingFunction],
    *,
    gold: np.ndarray | None = None,
) -> list[dict[str, float | int | str | None]]:
    """Per rule: coverage, overlap (fires with another rule), conflict (fires with a rule of
    another label), and accuracy against `gold` label indices (-1 = unknown) where known."""
    n = max(matrix.shape[0], 1)
    columns = np.ascontiguousarray(matrix.T)  # one row per rule: sums across rules are adds
    fired = columns != ABSTAIN
    n_fired = fired.sum(axis=0)
    # per label a rule has: how many rules voted it on each record
    votes_for = {label: (columns == label).sum(axis=0) for label in {lf.label_index for lf in lfs}}
    rows = []
    for j, lf in enumerate(lfs):
        mine = fired[j]
        agreeing = votes_for[lf.label_index] - (columns[j] == lf.label_index)
        others = n_fired - mine - agreeing  # other rules that voted another label
        row: dict[str, float | int | str | None] = {
            "rule": lf.name,
            "label": lf.label,
            "fired": int(mine.sum()),
            "coverage": float(mine.sum() / n),
            "overlap": float((mine & (n_fired > 1)).sum() / n),
            "conflict": float((mine & (others > 0)).sum() / n),
            "accuracy": None,
            "n_gold": 0,
        }
        if gold is not None:
            known = mine & (gold != ABSTAIN)
            row["n_gold"] = int(known.sum())
            if known.any():
                row["accuracy"] = float((gold[known] == lf.label_index).mean())
        rows.append(row)
    return rows
