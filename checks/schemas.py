"""Pandera schemas of every stage table, specialised to a task's labels."""

import pandera.pandas as pa

from annotation_assets.core import images, ingest, llm
from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse import codes

_TEXT_REASONS = [
    ingest.MALFORMED_JSON,
    ingest.NOT_AN_OBJECT,
    ingest.INVALID_UTF8,
    ingest.LINE_TOO_LONG,
    ingest.MALFORMED_CSV,
    ingest.MISSING_ID,
    ingest.INVALID_ID,
    ingest.MISSING_TEXT,
    ingest.INVALID_TEXT,
    ingest.UNREADABLE_FILE,
    ingest.UNSUPPORTED_FILE,
    ingest.OUTSIDE_DROP,
    codes.TEXT_TOO_LONG,
    codes.EMPTY_TEXT,
    codes.DUPLICATE_ID,
]
QUARANTINE_REASONS = _TEXT_REASONS + [r for r in images.IMAGE_REASONS if r not in _TEXT_REASONS]
PENDING_REASONS = [
    "contested",
    "awaiting_votes",
    "rule_conflict",
    "invalid_answer",
    "heavy_unavailable",
    "no_suggestion",
    "low_confidence",
]
HEAVY_STATUSES = list(llm.HEAVY_STATUSES)
_UNIT = [pa.Check.in_range(0.0, 1.0)]


def _str(
    nullable: bool = False, checks: list[pa.Check] | None = None, unique: bool = False
) -> pa.Column:
    return pa.Column(str, nullable=nullable, checks=checks or [], unique=unique)


def _prob(nullable: bool = False) -> pa.Column:
    return pa.Column(float, nullable=nullable, checks=_UNIT)


def table_schemas(spec: TaskSpec) -> dict[str, pa.DataFrameSchema]:
    """One schema per partitioned stage table; extra columns are allowed (lineage grows)."""
    labels = spec.label_names
    label = [pa.Check.isin(labels)]
    drop = _str()
    return {
        "raw_records": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "row_num": pa.Column(int, checks=[pa.Check.ge(0)], unique=True),
                "source_file": _str(),
                "error": _str(nullable=True, checks=[pa.Check.isin(QUARANTINE_REASONS)]),
            }
        ),
        "normalized_records": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "record_id": _str(unique=True),
                "text": _str(checks=[pa.Check.str_length(min_value=1)]),
                "dedup_key": _str(checks=[pa.Check.str_matches(r"^[0-9a-f]{32}$")]),
            }
        ),
        "quarantine": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "row_num": pa.Column(int, unique=True),
                "reason": _str(checks=[pa.Check.isin(QUARANTINE_REASONS)]),
            }
        ),
        "duplicates": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "row_num": pa.Column(int, unique=True),
                "kind": _str(checks=[pa.Check.isin(["exact", "near"])]),
                "duplicate_of_id": _str(),
                "similarity": _prob(),
            }
        ),
        "rule_labels": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "record_id": _str(unique=True),
                "rule_label": _str(nullable=True, checks=label),
                "rule_confidence": _prob(nullable=True),
                "rule_conflict": pa.Column(bool),
            }
        ),
        "model_labels": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "record_id": _str(unique=True),
                "model_label": _str(nullable=True, checks=label),
                "model_confidence": _prob(nullable=True),
                "label": _str(nullable=True, checks=label),
                "confidence": _prob(),
                "source": _str(
                    nullable=True,
                    checks=[pa.Check.isin(["rule", "model", codes.IMAGE_TEXT_SOURCE])],
                ),
                "accepted": pa.Column(bool),
            }
        ),
        "heavy_labels": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "record_id": _str(unique=True),
                "heavy_label": _str(nullable=True, checks=label),
                "heavy_confidence": _prob(nullable=True),
                "heavy_status": _str(nullable=True, checks=[pa.Check.isin(HEAVY_STATUSES)]),
                "label": _str(nullable=True, checks=label),
                "confidence": _prob(),
                "source": _str(
                    nullable=True,
                    checks=[pa.Check.isin(["rule", "model", "heavy", codes.IMAGE_TEXT_SOURCE])],
                ),
                "accepted": pa.Column(bool),
            }
        ),
        "hitl_pending": pa.DataFrameSchema(
            {
                "drop_id": drop,
                "record_id": _str(unique=True),
                "text": _str(),
                "suggested_label": _str(nullable=True, checks=label),
                "confidence": _prob(nullable=True),
                "reason": _str(checks=[pa.Check.isin(PENDING_REASONS)]),
            }
        ),
        "final_dataset": pa.DataFrameSchema(
            {
                "id": _str(unique=True),
                "drop_id": drop,
                "text": _str(checks=[pa.Check.str_length(min_value=1)]),
                "label": _str(checks=label),
                "source": _str(checks=[pa.Check.isin([*codes.SOURCES, codes.IMAGE_TEXT_SOURCE])]),
                "confidence": _prob(),
            }
        ),
    }
