"""COCO-JSON export: loads with pycocotools, round-trips labels and boxes, stable ids."""

import json
import stat
from pathlib import Path

import pandas as pd
import pytest
from pycocotools.coco import COCO

from annotation_assets.core import coco
from annotation_assets.core.coco import coco_dataset, stable_id, write_coco

LABELS = ["electronics", "apparel", "home"]


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["img-1", "img-2", "img-3", "img-4"],
            "label": ["apparel", "electronics", "home", "apparel"],
            "file": ["d1/tee.png", "d1/phone.jpg", "d2/chair.png", "d2/hoodie.jpg"],
            "width": [96, 120, 64, 200],
            "height": [96, 80, 64, 100],
            "source": ["rule", "heavy", "human", "model_text"],
            "confidence": [0.92, 0.88, 1.0, None],
            "drop_id": ["d1", "d1", "d2", "d2"],
        }
    )


def _load(tmp_path: Path, rows: pd.DataFrame, name: str = "t.coco.json") -> COCO:
    path = write_coco(tmp_path / name, coco_dataset(rows, labels=LABELS, task="products"))
    return COCO(str(path))


def _ids(dataset: dict) -> dict[str, tuple[int, int]]:
    ann = {a["image_id"]: a["id"] for a in dataset["annotations"]}
    return {img["record_id"]: (img["id"], ann[img["id"]]) for img in dataset["images"]}


def test_written_dataset_loads_and_round_trips_labels_and_boxes(tmp_path: Path) -> None:
    api = _load(tmp_path, _rows())
    assert len(api.getImgIds()) == 4
    names = {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())}
    by_record = {}
    for img in api.loadImgs(api.getImgIds()):
        (ann,) = api.loadAnns(api.getAnnIds(imgIds=[img["id"]]))
        by_record[img["record_id"]] = (names[ann["category_id"]], ann["bbox"], img["file_name"])
        assert ann["area"] == img["width"] * img["height"] and ann["iscrowd"] == 0
    assert by_record == {
        "img-1": ("apparel", [0, 0, 96, 96], "d1/tee.png"),
        "img-2": ("electronics", [0, 0, 120, 80], "d1/phone.jpg"),
        "img-3": ("home", [0, 0, 64, 64], "d2/chair.png"),
        "img-4": ("apparel", [0, 0, 200, 100], "d2/hoodie.jpg"),
    }
    assert len(api.getImgIds(catIds=[api.getCatIds(catNms=["apparel"])[0]])) == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy 2 notice
def test_masks_cover_the_whole_image(tmp_path: Path) -> None:
    api = _load(tmp_path, _rows())
    img = api.loadImgs(api.getImgIds())[0]
    (ann,) = api.loadAnns(api.getAnnIds(imgIds=[img["id"]]))
    assert api.annToMask(ann).sum() == img["width"] * img["height"]


def test_given_bbox_is_kept(tmp_path: Path) -> None:
    rows = _rows()
    rows["bbox"] = [[10, 5, 30, 40], None, None, None]
    api = _load(tmp_path, rows)
    anns = api.loadAnns(api.getAnnIds())
    boxed = next(a for a in anns if a["bbox"] == [10, 5, 30, 40])
    assert boxed["area"] == 1200
    assert api.loadImgs([boxed["image_id"]])[0]["record_id"] == "img-1"


def test_categories_follow_the_label_order() -> None:
    dataset = coco_dataset(_rows(), labels=LABELS, task="products")
    assert [(c["id"], c["name"]) for c in dataset["categories"]] == [
        (1, "electronics"),
        (2, "apparel"),
        (3, "home"),
    ]


def test_ids_are_stable_across_exports_and_row_order() -> None:
    first = coco_dataset(_rows(), labels=LABELS, task="products")
    again = coco_dataset(_rows(), labels=LABELS, task="products")
    shuffled = coco_dataset(_rows().sample(frac=1, random_state=3), labels=LABELS, task="products")
    fewer = coco_dataset(_rows().iloc[1:], labels=LABELS, task="products")
    assert _ids(first) == _ids(again) == _ids(shuffled)
    assert _ids(fewer) == {k: v for k, v in _ids(first).items() if k != "img-1"}
    assert first["images"] == shuffled["images"]
    for image_id, annotation_id in _ids(first).values():
        assert 0 < image_id < 2**53 and 0 < annotation_id < 2**53


def test_extras_and_missing_confidence_survive_json(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "x.json", coco_dataset(_rows(), labels=LABELS, task="p"))
    data = json.loads(path.read_text())
    by_image = {a["image_id"]: a for a in data["annotations"]}
    img4 = next(i for i in data["images"] if i["record_id"] == "img-4")
    assert img4["drop_id"] == "d2"
    assert by_image[img4["id"]]["source"] == "model_text"
    assert by_image[img4["id"]]["confidence"] is None
    assert data["licenses"][0]["id"] == img4["license"]


def test_unknown_label_or_repeated_record_is_refused() -> None:
    rows = _rows()
    rows.loc[0, "label"] = "toys"
    with pytest.raises(ValueError, match="toys"):
        coco_dataset(rows, labels=LABELS, task="p")
    with pytest.raises(ValueError, match="img-1"):
        coco_dataset(pd.concat([_rows(), _rows().iloc[:1]]), labels=LABELS, task="p")


def test_id_collision_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco, "stable_id", lambda kind, record_id: 7)
    with pytest.raises(ValueError, match="collision"):
        coco_dataset(_rows(), labels=LABELS, task="p")


def test_stable_id_is_a_fixed_function_of_the_record_id() -> None:
    assert stable_id("image", "img-1") == stable_id("image", "img-1")
    assert stable_id("image", "img-1") != stable_id("annotation", "img-1")
    assert stable_id("image", "img-1") == 1076913396486344  # pinned: exports must not drift


def test_write_coco_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out" / "t.coco.json"
    write_coco(path, {"images": [1]})
    write_coco(path, {"images": [2]})
    assert json.loads(path.read_text()) == {"images": [2]}
    assert [p.name for p in path.parent.iterdir()] == ["t.coco.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
