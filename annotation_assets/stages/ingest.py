"""The ingest stage: a drop's record files streamed into raw_records, bad lines kept with the
reason they could not be read."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotation_assets.core import images, ingest
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import Progress
from annotation_assets.warehouse.sql import CHUNK_ROWS, Connect, insert_temp, now, q
from annotation_assets.warehouse.tables import column_names, transaction


@dataclass
class IngestStats:
    ingested: int = 0
    parse_errors: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


RAW_TABLE_COLUMNS = column_names("raw_records")


def ingest_drop(
    connect: Connect,
    spec: TaskSpec,
    drop_id: str,
    drop_dir: Path,
    *,
    location: str | None = None,
    progress: Progress | None = None,
) -> IngestStats:
    """Streams every record file of the drop into raw_records (bad lines kept with a reason)."""
    task = spec.name
    stats = IngestStats()
    stamp = now()
    total_bytes = sum(p.stat().st_size for p in ingest.list_drop_files(drop_dir) if p.is_file())
    done_bytes = 0
    if progress:
        progress("ingest", 0, None)
    fields = ingest.FieldMap(
        id=spec.fields.id, text=spec.fields.text, records=spec.fields.record_path
    )
    with connect() as conn:
        # Rows go to a temporary table first, outside any transaction: DuckDB keeps a
        # transaction's uncommitted rows in memory, but spills a temporary table to disk
        # beyond the warehouse's memory_limit. One short transaction then publishes the drop.
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM {q(task, 'raw_records')} LIMIT 0"
        )
        chunks = (
            images.iter_image_raw_chunks(
                drop_dir,
                id_field=spec.fields.id,
                max_pixels=spec.images.max_pixels,
                chunk_size=CHUNK_ROWS,
            )
            if spec.is_image
            else ingest.iter_raw_chunks(
                drop_dir,
                fields=fields,
                max_line_bytes=spec.limits.max_line_bytes,
                chunk_size=CHUNK_ROWS,
            )
        )
        for chunk in chunks:
            chunk.insert(0, "drop_id", drop_id)
            chunk.insert(1, "row_num", np.arange(stats.ingested, stats.ingested + len(chunk)))
            chunk["ingested_at"] = stamp
            insert_temp(conn, "_raw", chunk[[c for c in RAW_TABLE_COLUMNS if c in chunk.columns]])
            stats.ingested += len(chunk)
            for reason, n in chunk["error"].value_counts().items():
                stats.parse_errors[str(reason)] = stats.parse_errors.get(str(reason), 0) + int(n)
            for name, n in chunk["source_file"].value_counts().items():
                stats.files[str(name)] = stats.files.get(str(name), 0) + int(n)
            if progress:
                done_bytes += int(chunk["payload"].fillna("").str.len().sum()) + len(chunk)
                progress(
                    "ingest",
                    stats.ingested,
                    _estimated_total(stats.ingested, done_bytes, total_bytes),
                )
        with transaction(conn):
            conn.execute(
                f"INSERT INTO {q(task, 'drops')} SELECT ?, coalesce(max(seq), 0) + 1, ?, ? "
                f"FROM {q(task, 'drops')} ON CONFLICT DO NOTHING",
                [drop_id, location or str(drop_dir), stamp],
            )
            conn.execute(f"DELETE FROM {q(task, 'raw_records')} WHERE drop_id = ?", [drop_id])
            # a plain scan keeps insertion (row_num) order
            conn.execute(f"INSERT INTO {q(task, 'raw_records')} SELECT * FROM _raw")
        conn.execute("DROP TABLE _raw")
    return stats


def _estimated_total(done: int, done_bytes: int, total_bytes: int) -> int | None:
    """Records in the whole drop, extrapolated from the bytes read so far (for an ETA);
    None when nothing can be estimated (e.g. Parquet, whose rows carry no raw line)."""
    if done_bytes <= done or total_bytes <= 0:
        return None
    return max(done, round(done * total_bytes / done_bytes))
