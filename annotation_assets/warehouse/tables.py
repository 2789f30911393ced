"""Column layouts of every warehouse table, one DuckDB schema per task."""

from typing import Any

import duckdb

TABLES: dict[str, dict[str, str]] = {
    "drops": {
        "drop_id": "VARCHAR PRIMARY KEY",
        "seq": "INTEGER NOT NULL",
        "location": "VARCHAR",
        "registered_at": "TIMESTAMP NOT NULL",
    },
    "raw_records": {
        "drop_id": "VARCHAR NOT NULL",
        "row_num": "BIGINT NOT NULL",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT",
        "record_id": "VARCHAR",
        "text": "VARCHAR",
        "meta": "VARCHAR",
        "payload": "VARCHAR",
        "error": "VARCHAR",
        "detail": "VARCHAR",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    "quarantine": {
        "drop_id": "VARCHAR NOT NULL",
        "row_num": "BIGINT NOT NULL",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT",
        "record_id": "VARCHAR",
        "reason": "VARCHAR NOT NULL",
        "detail": "VARCHAR",
        "payload": "VARCHAR",
    },
    "duplicates": {
        "drop_id": "VARCHAR NOT NULL",
        "row_num": "BIGINT NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "kind": "VARCHAR NOT NULL",
        "duplicate_of_drop": "VARCHAR NOT NULL",
        "duplicate_of_id": "VARCHAR NOT NULL",
        "similarity": "DOUBLE NOT NULL",
    },
    "normalized_records": {
        "drop_id": "VARCHAR NOT NULL",
        "row_num": "BIGINT NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "text": "VARCHAR NOT NULL",
        "dedup_key": "VARCHAR NOT NULL",
        "minhash": "UINTEGER[]",
        "meta": "VARCHAR",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
    "rule_labels": {
        "drop_id": "VARCHAR NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "rule_label": "VARCHAR",
        "rule_confidence": "DOUBLE",
        "rules_fired": "VARCHAR[]",
        "rule_conflict": "BOOLEAN NOT NULL",
    },
    "embeddings": {
        "encoder": "VARCHAR NOT NULL",
        "dedup_key": "VARCHAR NOT NULL",
        "vector": "FLOAT[]",
    },
    "model_versions": {
        "version": "VARCHAR PRIMARY KEY",
        "kind": "VARCHAR NOT NULL",
        "encoder": "VARCHAR NOT NULL",
        "created_at": "TIMESTAMP NOT NULL",
        "n_train": "INTEGER NOT NULL",
        "train_by_source": "VARCHAR",
        "metrics": "VARCHAR",
        "artifact": "VARCHAR",
    },
    "model_labels": {
        "drop_id": "VARCHAR NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "dedup_key": "VARCHAR",
        "model_label": "VARCHAR",
        "model_confidence": "DOUBLE",
        "model_probs": "DOUBLE[]",
        "model_version": "VARCHAR",
        "label": "VARCHAR",
        "confidence": "DOUBLE",
        "source": "VARCHAR",
        "accepted": "BOOLEAN NOT NULL",
    },
    # The heavy stage's vote and the cascade's decision after it, for every record of a drop
    # (heavy_* null where the heavy tier was not asked). Downstream stages read decisions here.
    "heavy_labels": {
        "drop_id": "VARCHAR NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "dedup_key": "VARCHAR",
        "heavy_label": "VARCHAR",
        "heavy_confidence": "DOUBLE",
        "heavy_raw_confidence": "DOUBLE",
        "heavy_version": "VARCHAR",
        "heavy_status": "VARCHAR",
        "heavy_detail": "VARCHAR",
        "tokens_in": "BIGINT",
        "tokens_out": "BIGINT",
        "cost": "DOUBLE",
        "model_version": "VARCHAR",
        "label": "VARCHAR",
        "confidence": "DOUBLE",
        "source": "VARCHAR",
        "accepted": "BOOLEAN NOT NULL",
    },
    # The language model's answers, keyed by model, prompt and sampling settings: a re-run, a
    # crash re-run or a re-score asks the server only for prompts it never answered.
    "llm_responses": {
        "key": "VARCHAR NOT NULL",
        "model": "VARCHAR NOT NULL",
        "label": "VARCHAR",
        "confidence": "DOUBLE",
        "status": "VARCHAR NOT NULL",
        "detail": "VARCHAR",
        "samples": "VARCHAR[]",
        "tokens_in": "BIGINT NOT NULL",
        "tokens_out": "BIGINT NOT NULL",
        "latency_s": "DOUBLE NOT NULL",
        "created_at": "TIMESTAMP NOT NULL",
    },
    "human_labels": {
        "record_id": "VARCHAR NOT NULL",
        "label": "VARCHAR NOT NULL",
        "annotator": "VARCHAR NOT NULL",
        "decided_at": "TIMESTAMP",
        "source_file": "VARCHAR NOT NULL",
        "imported_at": "TIMESTAMP NOT NULL",
    },
    # Decision files of reviews/<task>/ whose every row was valid when the human_labels asset
    # replayed them under the spec's labels (`labels`: a digest of their names): replaying
    # one again (same name, same bytes, same labels) would change nothing.
    "review_files": {
        "file": "VARCHAR NOT NULL",
        "sha256": "VARCHAR NOT NULL",
        "labels": "VARCHAR NOT NULL",
        "rows": "BIGINT NOT NULL",
        "replayed_at": "TIMESTAMP NOT NULL",
    },
    "hitl_pending": {
        "drop_id": "VARCHAR NOT NULL",
        "record_id": "VARCHAR NOT NULL",
        "text": "VARCHAR NOT NULL",
        "suggested_label": "VARCHAR",
        "confidence": "DOUBLE",
        "suggested_by": "VARCHAR",
        "reason": "VARCHAR NOT NULL",
        "model_version": "VARCHAR",
    },
    "stage_timings": {
        "drop_id": "VARCHAR NOT NULL",
        "stage": "VARCHAR NOT NULL",
        "seconds": "DOUBLE NOT NULL",
        "records": "BIGINT NOT NULL",
        "finished_at": "TIMESTAMP NOT NULL",
    },
    "final_dataset": {
        "id": "VARCHAR NOT NULL",
        "drop_id": "VARCHAR NOT NULL",
        "text": "VARCHAR NOT NULL",
        "label": "VARCHAR NOT NULL",
        "source": "VARCHAR NOT NULL",
        "confidence": "DOUBLE NOT NULL",
        "rule_names": "VARCHAR[]",
        "model_version": "VARCHAR",
        "annotators": "VARCHAR[]",
        "source_file": "VARCHAR NOT NULL",
        "line_no": "BIGINT",
        "ingested_at": "TIMESTAMP NOT NULL",
    },
}

PARTITIONED = {
    "raw_records",
    "quarantine",
    "duplicates",
    "normalized_records",
    "rule_labels",
    "model_labels",
    "heavy_labels",
    "hitl_pending",
    "final_dataset",
}


def create_statements(schema: str) -> list[str]:
    """DDL that creates the task's schema and every table in it, if missing."""
    statements = [f'CREATE SCHEMA IF NOT EXISTS "{schema}"']
    for table, columns in TABLES.items():
        cols = ", ".join(f'"{name}" {sqltype}' for name, sqltype in columns.items())
        statements.append(f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" ({cols})')
    # No unique index on embeddings (earlier versions made one): DuckDB keeps ART indexes in
    # memory, outside what it can spill, so a few million cached embeddings would exhaust the
    # warehouse's memory_limit. embed_cached inserts only keys not stored yet instead.
    statements.append(f'DROP INDEX IF EXISTS "{schema}".embeddings_key')
    return statements


def column_names(table: str) -> list[str]:
    return list(TABLES[table])


class transaction:  # noqa: N801 - used like a function: `with transaction(conn):`
    """One DuckDB transaction: committed when the block ends, rolled back if it raises."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.conn.execute("BEGIN TRANSACTION")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of an executed query, consuming the whole result (DuckDB refuses further
    work on a connection whose result was only partly fetched)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    """The single value a query returns (None for no rows)."""
    row = first_row(conn.execute(sql, params) if params is not None else conn.execute(sql))
    return row[0] if row else None
