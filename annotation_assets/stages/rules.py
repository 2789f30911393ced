"""The rules stage: the spec's labeling functions applied to a drop's records, their votes
combined into rule_labels, each rule's confidence optionally calibrated on human decisions."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from annotation_assets.core import ingest
from annotation_assets.core.arrays import ramps
from annotation_assets.core.routing import NO_LABEL
from annotation_assets.core.rules import (
    LabelingFunction,
    apply_labeling_functions,
    build_labeling_functions,
    combine_rule_votes,
    rule_summary,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.decisions import decided_records
from annotation_assets.warehouse.sql import Connect, q, replace_rows
from annotation_assets.warehouse.tables import transaction


@dataclass
class RulesResult:
    n_records: int
    n_labeled: int
    n_conflicts: int
    summary: list[dict[str, Any]]


def label_by_rules(connect: Connect, spec: TaskSpec, drop_id: str) -> RulesResult:
    """Applies the spec's rules to the drop's records and writes rule_labels."""
    task = spec.name
    lfs = build_labeling_functions(spec)
    label_names = spec.label_names
    with connect() as conn, transaction(conn):
        # The fields the rules read, as Arrow: both the RE2 matcher and the lexicon scorer
        # read the texts' bytes in place.
        fields = sorted({lf.field for lf in lfs})
        selects = "".join(
            f', {expr} AS "f{i}"' for i, expr in enumerate(_field_sql(fields).values())
        )
        stored = conn.sql(
            f"SELECT record_id{selects} FROM {q(task, 'normalized_records')}"
            " WHERE drop_id = $drop ORDER BY row_num",
            params={"drop": drop_id, **_field_params(fields)},
        ).to_arrow_table()
        frame = pd.DataFrame(
            {
                name: pd.arrays.ArrowExtensionArray(stored.column(i + 1))
                for i, name in enumerate(fields)
            },
            index=pd.RangeIndex(stored.num_rows),
        )
        matrix = apply_labeling_functions(frame, lfs)
        record_ids = stored.column(0)
        decisions = decided_records(conn, spec)
        # Label index of each record's human decision; ambiguous (duplicate) ids count as none.
        decided = decisions.drop_duplicates("record_id", keep=False)
        index = {label: i for i, label in enumerate(label_names)}
        gold_index = decided["label"].astype(str).map(index).fillna(NO_LABEL).to_numpy(np.int64)
        at = pc.index_in(
            record_ids, value_set=pa.array(decided["record_id"].astype(str), record_ids.type)
        )
        found = at.is_valid().to_numpy(zero_copy_only=False)
        gold = np.full(len(frame), NO_LABEL, dtype=np.int64)
        gold[found] = gold_index[at.drop_null().to_numpy()]
        summary = rule_summary(matrix, lfs, gold=gold)
        if spec.review.calibrate_rules and lfs:
            lfs = _calibrated_rules(conn, spec, drop_id, lfs, decisions, summary)
        votes = combine_rule_votes(matrix, lfs, len(label_names))
        for row, lf in zip(summary, lfs, strict=True):
            row["confidence_used"] = lf.confidence
        n = len(frame)
        unlabeled = votes.label_index == NO_LABEL
        out = pa.table(
            {
                "drop_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int32)), pa.array([drop_id], pa.string())
                ),
                "record_id": record_ids,
                "rule_label": pa.DictionaryArray.from_arrays(
                    pa.array(
                        np.where(unlabeled, 0, votes.label_index).astype(np.int32), mask=unlabeled
                    ),
                    pa.array(label_names, pa.string()),
                ),
                "rule_confidence": pa.array(votes.confidence, pa.float64(), mask=unlabeled),
                "rules_fired": _fired_rule_lists(matrix, [lf.name for lf in lfs]),
                "rule_conflict": pa.array(votes.conflict, pa.bool_()),
            }
        )
        replace_rows(conn, task, "rule_labels", drop_id, out)
    return RulesResult(
        n_records=len(frame),
        n_labeled=int((votes.label_index != NO_LABEL).sum()),
        n_conflicts=int(votes.conflict.sum()),
        summary=summary,
    )


def _field_sql(fields: Sequence[str]) -> dict[str, str]:
    """The SQL expression of each record field a rule reads: `text`, or a key of `meta` (its
    JSON path passed as parameter $f<i>, from `_field_params`). A name with dots that is not a
    key itself reaches into nested objects ($n<i>), as ingest.field_value reads the record."""
    exprs = {}
    for i, f in enumerate(fields):
        if f == "text":
            exprs[f] = "text"
        elif ingest.nested_parts(f) is None:
            exprs[f] = f"json_extract_string(meta, $f{i})"
        else:
            exprs[f] = (
                f"CASE WHEN json_exists(meta, $f{i}) THEN json_extract_string(meta, $f{i})"
                f" ELSE json_extract_string(meta, $n{i}) END"
            )
    return exprs


def _field_params(fields: Sequence[str]) -> dict[str, str]:
    """The parameters `_field_sql(fields)` uses: the JSON path of each `meta` field, and of
    its nested reading when its name walks nested objects."""
    params: dict[str, str] = {}
    for i, f in enumerate(fields):
        if f != "text":
            params[f"f{i}"] = _json_path([f])
            parts = ingest.nested_parts(f)
            if parts is not None:
                params[f"n{i}"] = _json_path(parts)
    return params


def _json_path(keys: Sequence[str]) -> str:
    """A DuckDB JSON path to the nested keys, each quoted (a key may hold dots, spaces,
    quotes or backslashes)."""
    quoted = (k.replace("\\", "\\\\").replace('"', '\\"') for k in keys)
    return "$" + "".join(f'."{k}"' for k in quoted)


def _fired_rule_lists(matrix: np.ndarray, names: Sequence[str]) -> pa.ListArray:
    """Per record, the names of the rules that fired on it, in rule order, as an Arrow list
    array built from one integer code per record's firing pattern."""
    n = len(matrix)
    fired = matrix != NO_LABEL
    if len(names) <= 62:  # one integer code per record, then unique codes
        codes = np.zeros(n, dtype=np.int64)
        for j in range(len(names)):
            codes = codes * 2 + fired[:, j]
        pattern_of, patterns = pd.factorize(codes)
        members = [
            [j for j in range(len(names)) if code >> (len(names) - 1 - j) & 1]
            for code in patterns.tolist()
        ]
    else:  # unique rows of the firing matrix
        rows, pattern_of = np.unique(fired, axis=0, return_inverse=True)
        members = [np.flatnonzero(row).tolist() for row in rows]
    pattern_of = pattern_of.reshape(-1)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    flat = np.array([j for m in members for j in m], dtype=np.int64)
    pattern_start = np.cumsum(sizes) - sizes
    record_sizes = sizes[pattern_of]
    offsets = np.concatenate([[0], np.cumsum(record_sizes)]).astype(np.int64)
    at = np.repeat(pattern_start[pattern_of], record_sizes) + ramps(record_sizes)
    values = pa.DictionaryArray.from_arrays(
        pa.array(flat[at].astype(np.int32)), pa.array(list(names), pa.string())
    )
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def _calibrated_rules(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    drop_id: str,
    lfs: list[LabelingFunction],
    decisions: pd.DataFrame,
    summary: list[dict[str, Any]],
) -> list[LabelingFunction]:
    """Each rule's confidence moved from the stated value towards its precision measured on
    human-decided records where it fired (this drop and every other), as the mean of a Beta
    prior worth `review.rule_prior_strength` records at the stated confidence: a rule people
    keep overruling stops auto-accepting, one they keep confirming gains confidence (at most
    0.99). The evidence comes from records that reached review: conflicts, low-confidence
    rules, and audit samples (`annotate review export --audit N`)."""
    rules = pd.DataFrame({"rule": [lf.name for lf in lfs], "rule_label": [lf.label for lf in lfs]})
    conn.register("_rules", rules)
    conn.register("_decided_labels", decisions[["record_id", "label"]])
    elsewhere = dict(
        (name, (int(n), int(correct)))
        for name, n, correct in conn.execute(
            f"""
            SELECT f.rule, count(*), sum((d.label = r.rule_label)::INTEGER)
            FROM (SELECT record_id, unnest(rules_fired) AS rule
                  FROM {q(spec.name, "rule_labels")} WHERE drop_id <> ?) f
            JOIN _decided_labels d USING (record_id)
            JOIN _rules r USING (rule)
            GROUP BY f.rule
            """,
            [drop_id],
        ).fetchall()
    )
    conn.unregister("_rules")
    conn.unregister("_decided_labels")
    k = spec.review.rule_prior_strength
    calibrated = []
    for lf, row in zip(lfs, summary, strict=True):
        n_here = int(row["n_gold"] or 0)
        correct_here = round((row["accuracy"] or 0.0) * n_here)
        n_other, correct_other = elsewhere.get(lf.name, (0, 0))
        n, correct = n_here + n_other, correct_here + correct_other
        row["evidence"] = n
        confidence = min(0.99, (lf.confidence * k + correct) / (k + n)) if n else lf.confidence
        calibrated.append(replace(lf, confidence=float(confidence)))
    return calibrated
