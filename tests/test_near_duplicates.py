"""The near-duplicate search of normalize_drop: signatures streamed in batches find the same
duplicates, within a drop and against earlier drops, as one batch does."""

from pathlib import Path

import pyarrow as pa
import pytest

from annotation_assets.core import dedup
from annotation_assets.stages import normalize
from annotation_assets.stages.ingest import ingest_drop
from resources.warehouse import Warehouse
from tests.conftest import make_spec, write_jsonl

FIRST = [
    "The blender is loud but crushes ice well, and the jar is sturdy enough for soup.",
    "My kettle boils a full litre in two minutes and the handle never gets hot.",
    "These headphones pinch after an hour although the bass is rich and deep.",
    "The desk lamp flickers whenever the fridge compressor kicks in at night.",
    "Our new vacuum picks up dog hair from the rug but the bin fills very quickly.",
    "A sturdy umbrella that survived three storms without a single bent rib.",
    "The running shoes squeak on wet floors, otherwise they cushion every stride.",
]


def _drops() -> dict[str, list[dict[str, str]]]:
    first = [{"id": f"a{i}", "text": text} for i, text in enumerate(FIRST)]
    second = [
        # near duplicates of the first drop's records (one character changed)
        *({"id": f"b{i}", "text": FIRST[i][:-1] + "!"} for i in range(0, 7, 2)),
        # near duplicates of each other, within the drop
        {"id": "c1", "text": "A different review about a kettle that pours well and looks nice."},
        {"id": "c2", "text": "A different review about a kettle that pours well and looks nice!"},
        {"id": "fresh", "text": "Strap feels cheap; buckle bent within a week"},
    ]
    return {"d1": first, "d2": second}


def _duplicates(tmp_path: Path) -> list[tuple[str, ...]]:
    spec = make_spec()
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    for drop_id, records in _drops().items():
        folder = write_jsonl(tmp_path / "drops" / drop_id, records).parent
        ingest_drop(warehouse.connect, spec, drop_id, folder)
        normalize.normalize_drop(warehouse.connect, spec, drop_id)
    with warehouse.connect() as conn:
        return conn.execute(
            "SELECT drop_id, record_id, kind, duplicate_of_drop, duplicate_of_id"
            f' FROM "{spec.name}".duplicates ORDER BY drop_id, record_id'
        ).fetchall()


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_streamed_signatures_find_the_same_duplicates(tmp_path, monkeypatch, batch) -> None:
    whole = _duplicates(tmp_path / "whole")
    assert whole == [
        ("d2", "b0", "near", "d1", "a0"),
        ("d2", "b2", "near", "d1", "a2"),
        ("d2", "b4", "near", "d1", "a4"),
        ("d2", "b6", "near", "d1", "a6"),
        ("d2", "c2", "near", "d2", "c1"),
    ]
    monkeypatch.setattr(normalize, "SIGNATURE_BATCH", batch)
    assert _duplicates(tmp_path / "batched") == whole


def test_signatures_out_of_step_with_their_records_are_refused() -> None:
    ids = pa.table({"row_num": pa.array([1, 2, 3], pa.int64())})
    signature = [7] * dedup.NUM_PERM

    def stream(row_nums: list[int]) -> pa.RecordBatchReader:
        table = pa.table(
            {
                "row_num": pa.array(row_nums, pa.int64()),
                "minhash": pa.array([signature] * len(row_nums), pa.list_(pa.uint32())),
            }
        )
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))

    matrix = normalize._signature_matrix(stream([1, 2, 3]), ids)
    assert matrix.shape == (3, dedup.NUM_PERM) and (matrix == 7).all()
    with pytest.raises(LookupError, match="out of step with their records at row 2"):
        normalize._signature_matrix(stream([1, 2, 4]), ids)
    with pytest.raises(LookupError, match="expected 3 MinHash signatures, read 2"):
        normalize._signature_matrix(stream([1, 2]), ids)
