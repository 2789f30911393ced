"""Regenerate the bundled demo drops under annotation_assets/demo_data/drops/product_reviews/
(deterministic).

Run from the project root: python -m tools.make_demo_drops
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.synthetic import FORMATS, generate_reviews, write_drop

DEMO_DATA = Path(__file__).resolve().parents[1] / "annotation_assets" / "demo_data"
DROPS_DIR = DEMO_DATA / "drops" / "product_reviews"
BAD_UTF8_MARK = "@@BAD_BYTES@@"


def _clear(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name == "_SUCCESS" or (
            path.name.startswith("part-") and path.suffix in FORMATS.values()
        ):
            path.unlink()


def _touch_success(folder: Path) -> None:
    (folder / "_SUCCESS").write_bytes(b"")


def _insert_lines(path: Path, before_id: str, lines: list[bytes]) -> None:
    data = path.read_bytes().split(b"\n")
    prefix = (f'{{"id": "{before_id}"', f"{before_id},")
    at = next(
        i for i, line in enumerate(data) if line.decode("utf-8", "replace").startswith(prefix)
    )
    path.write_bytes(b"\n".join(data[:at] + lines + data[at:]))


def make_drop_1101(root: Path) -> list[dict[str, Any]]:
    """JSONL drop: 3 truncated lines, one invalid UTF-8 line, a record without text, one
    without id, exact and near duplicates."""
    folder = root / "2026-11-01"
    _clear(folder)
    records = generate_reviews(
        147,
        seed=20261101,
        id_prefix="rv1101-",
        start="2026-10-25T00:00:00Z",
        duplicate_rate=0.05,
        near_duplicate_rate=0.04,
    )
    written = [dict(r) for r in records]
    del written[41]["text"]
    del written[96]["id"]
    (path,) = write_drop(folder, written, fmt="jsonl", broken_lines=3, seed=1101)
    bad = {
        "id": "rv1101-0000147",
        "text": f"Arrived Thursday, the label on the box says {BAD_UTF8_MARK} instead of the name.",
        "rating": 3,
        "product": "Steamly Electric Kettle",
        "url": "https://m.bigbox.example/kettle/steamly-electric-kettle-B0166271/reviews?page=3",
        "scraped_at": "2026-10-28T12:00:00Z",
    }
    line = json.dumps(bad).encode("utf-8").replace(BAD_UTF8_MARK.encode(), b"\xff\xfe")
    _insert_lines(path, records[73]["id"], [line])
    _touch_success(folder)
    return records


def make_drop_1108(root: Path, earlier: list[dict[str, Any]]) -> None:
    """CSV drop: texts re-scraped from the first drop under new ids, one unclosed-quote row."""
    folder = root / "2026-11-08"
    _clear(folder)
    records = generate_reviews(
        120,
        seed=20261108,
        id_prefix="rv1108-",
        start="2026-11-01T00:00:00Z",
        duplicate_rate=0.03,
        near_duplicate_rate=0.02,
    )
    for target, source in ((12, 5), (37, 60), (81, 102), (110, 130)):
        for key in ("text", "rating", "product", "url", "gold_label"):
            records[target][key] = earlier[source][key]
    (path,) = write_drop(folder, records, fmt="csv", seed=1108)
    unclosed = (
        'rv1108-0000120,"Bought the lamp for late night reading. The base is heavy and'
        ",4,Lumio LED Desk Lamp,https://shop.example.com/desk-lamp/lumio-led-desk-lamp-B0118785"
        "/reviews?page=2,2026-11-04T09:12:44Z"
    )
    _insert_lines(path, records[64]["id"], [unclosed.encode("utf-8")])
    _touch_success(folder)


def make_drop_1115(root: Path) -> None:
    """Parquet drop, clean."""
    folder = root / "2026-11-15"
    _clear(folder)
    records = generate_reviews(
        100, seed=20261115, id_prefix="rv1115-", start="2026-11-08T00:00:00Z"
    )
    write_drop(folder, records, fmt="parquet", seed=1115)


def main(root: Path = DROPS_DIR) -> None:
    """Write all three demo drops under `root`."""
    first = make_drop_1101(root)
    make_drop_1108(root, first)
    make_drop_1115(root)


if __name__ == "__main__":
    main()
