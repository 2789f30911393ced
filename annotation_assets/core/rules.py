"""Labeling functions built from a task spec, applied set-wise to a batch of records.

Applying the rules gives a label matrix (records x rules) holding a label index where a rule
fires and -1 where it abstains, as in Snorkel. Rules are evaluated column-wise: regex and
keyword rules as RE2 expressions in DuckDB, lexicon rules from VADER compound scores computed
set-wise over the whole batch (`core.sentiment`: flat token arrays, vocabulary lookups and
look-back windows instead of a Python call per record). Those scores equal the `vader`
package's per-record `polarity_scores(text)["compound"]` exactly; the one construct the
set-wise path does not reproduce (two overlapping multiword-lexicon phrases in one text) is
detected set-wise and those records alone are scored by the package itself.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from annotation_assets.core.sentiment import TextColumn, vader_compound_scores
from annotation_assets.core.spec import (
    KeywordsRule,
    LexiconSentimentRule,
    RegexRule,
    TaskSpec,
)

ABSTAIN = -1
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


PatternMatcher = Callable[[Sequence[int]], Sequence[np.ndarray]]


def apply_labeling_functions(
    frame: pd.DataFrame,
    lfs: Sequence[LabelingFunction],
    *,
    match_patterns: PatternMatcher | None = None,
) -> np.ndarray:
    """The label matrix of `lfs` over `frame` (whose columns are the fields the rules read):
    one row per record, one column per rule, int16, -1 = abstain.

    Lexicon rules share one VADER score per distinct field, computed on other threads while
    the pattern rules are matched. `match_patterns(columns)` gives, for the pattern rules at
    those columns, whether each record (in frame order) matches, e.g. from a query on stored
    records; by default one DuckDB query over `frame` does it (`frame_pattern_matcher`)."""
    n = len(frame)
    matrix = np.full((n, len(lfs)), ABSTAIN, dtype=np.int16)
    if n == 0 or not lfs:
        return matrix
    lexicon_fields = sorted({lf.field for lf in lfs if lf.band is not None})
    pattern_cols = [j for j, lf in enumerate(lfs) if lf.pattern is not None]
    texts = {name: _field_values(frame, name) for name in lexicon_fields}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lexicon") as pool:
        scoring = {name: pool.submit(vader_compound, texts[name]) for name in lexicon_fields}
        if pattern_cols:
            matcher = match_patterns or frame_pattern_matcher(frame, lfs, known=texts)
            hits = matcher(pattern_cols)
            if len(hits) != len(pattern_cols) or any(len(h) != n for h in hits):
                raise ValueError("pattern matches do not line up with the records and rules")
            for j, fired in zip(pattern_cols, hits, strict=True):
                matrix[np.asarray(fired, dtype=bool), j] = lfs[j].label_index
        scores = {name: future.result() for name, future in scoring.items()}
    for j, lf in enumerate(lfs):
        if lf.band is None:
            continue
        compound = scores[lf.field]
        with np.errstate(invalid="ignore"):
            fired = (compound >= lf.band[0]) & (compound <= lf.band[1])
        matrix[fired, j] = lf.label_index
    return matrix


def pattern_select(
    lfs: Sequence[LabelingFunction], columns: Sequence[int], field_sql: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """A SELECT list with one boolean per pattern rule at `columns` (RE2, NULL text: no
    match) and its parameters; `field_sql` maps each rule field to its SQL expression."""
    select = ", ".join(
        f"coalesce(regexp_matches({field_sql[lfs[j].field]}, $p{j}), false) AS hit{j}"
        for j in columns
    )
    return select, {f"p{j}": str(lfs[j].pattern) for j in columns}


def frame_pattern_matcher(
    frame: pd.DataFrame,
    lfs: Sequence[LabelingFunction],
    *,
    known: Mapping[str, TextColumn] | None = None,
) -> PatternMatcher:
    """Matches pattern rules with one DuckDB query over `frame`'s fields (`known`: field
    values already taken from the frame)."""

    def values(name: str) -> TextColumn:
        return known[name] if known and name in known else _field_values(frame, name)

    def match(columns: Sequence[int]) -> list[np.ndarray]:
        fields = sorted({lfs[j].field for j in columns})
        field_sql = {f: f"f{i}" for i, f in enumerate(fields)}
        view = pd.DataFrame({field_sql[f]: _as_column(values(f)) for f in fields})
        select, params = pattern_select(lfs, columns, field_sql)
        with duckdb.connect() as conn:
            conn.register("records", view)
            hits = conn.execute(f"SELECT {select} FROM records", params).fetchnumpy()
        return [np.asarray(column, dtype=bool) for column in hits.values()]

    return match


def _as_column(values: TextColumn) -> pd.Series | list[str | None]:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return pd.Series(pd.arrays.ArrowExtensionArray(values))
    return list(values)


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
    per_label = np.zeros((n, n_labels), dtype=np.float64)
    for j, lf in enumerate(lfs):
        fired = matrix[:, j] == lf.label_index
        per_label[fired, lf.label_index] = np.maximum(
            per_label[fired, lf.label_index], lf.confidence
        )
    labels_fired = (per_label > 0).sum(axis=1)
    agreed = labels_fired == 1
    label_index = np.where(agreed, per_label.argmax(axis=1), ABSTAIN)
    confidence = np.where(agreed, per_label.max(axis=1), 0.0)
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
    fired = matrix != ABSTAIN
    n_fired = fired.sum(axis=1)
    rows = []
    for j, lf in enumerate(lfs):
        mine = fired[:, j]
        others = fired & (matrix != lf.label_index)
        others[:, j] = False
        row: dict[str, float | int | str | None] = {
            "rule": lf.name,
            "label": lf.label,
            "fired": int(mine.sum()),
            "coverage": float(mine.sum() / n),
            "overlap": float((mine & (n_fired > 1)).sum() / n),
            "conflict": float((mine & others.any(axis=1)).sum() / n),
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
