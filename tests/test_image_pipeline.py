"""Image tasks end to end: bad and duplicate images, the CLIP heavy stage (a tiny CLIP built
from a config), the metadata-text fallback, the unknown class, COCO export, review round trip."""

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from annotation_assets.core.clip import tiny_clip
from annotation_assets.core.spec import load_task_spec
from annotation_assets.home import PROJECT_ROOT, Home
from tests.cli import Cli
from tests.test_assets import Deployment

TASK = "product_images"
DEMO = PROJECT_ROOT / "annotation_assets" / "demo_data" / "drops" / TASK
SPEC = PROJECT_ROOT / "tasks" / f"{TASK}.yaml"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _tasks(tmp_path: Path, **overrides: Any) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    data = yaml.safe_load(SPEC.read_text())
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    (folder / f"{TASK}.yaml").write_text(yaml.safe_dump(data))
    return folder


def _deploy(tmp_path: Path, encoder: Path, clip: Path | None, **overrides: Any) -> Deployment:
    home = Home(tmp_path / "home").create()
    d = Deployment(home, _tasks(tmp_path, **overrides), encoder, clip)
    for drop in sorted(DEMO.iterdir()):
        shutil.copytree(drop, home.drop_dir(TASK, drop.name))
    return d


def test_bad_and_duplicate_images_are_quarantined_or_dropped_with_pointers(
    tmp_path: Path, tiny_encoder_dir: Path, clip_dir: Path
) -> None:
    d = _deploy(tmp_path, tiny_encoder_dir, clip_dir)
    for drop in ("2026-11-02", "2026-11-09"):
        assert d.run(drop, task=TASK).success
        c = d.counts(drop, task=TASK)
        assert (
            c["ingested"]
            == c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
        )
    reasons = {r for (r,) in d.sql(f"SELECT reason FROM {TASK}.quarantine")}
    assert {"corrupt_image", "empty_file", "not_an_image", "missing_file"} <= reasons
    dups = d.sql(f"SELECT drop_id, kind, duplicate_of_drop FROM {TASK}.duplicates")
    assert ("2026-11-02", "exact", "2026-11-02") in dups
    assert ("2026-11-02", "near", "2026-11-02") in dups
    assert any(drop == "2026-11-09" and of == "2026-11-02" for drop, _, of in dups)
    meta = json.loads(d.sql(f"SELECT meta FROM {TASK}.normalized_records LIMIT 1")[0][0])
    assert {"width", "height", "format", "mode", "bytes", "sha256", "phash"} <= set(meta)


def test_clip_scores_the_images_the_rules_and_text_model_left_unsure(
    tmp_path: Path, tiny_encoder_dir: Path, clip_dir: Path
) -> None:
    d = _deploy(tmp_path, tiny_encoder_dir, clip_dir)
    assert d.run("2026-11-02", task=TASK).success
    heavy = d.sql(
        f"SELECT count(*), count(DISTINCT heavy_version) FROM {TASK}.heavy_labels"
        " WHERE heavy_label IS NOT NULL"
    )[0]
    unsettled = d.sql(
        f"SELECT count(*) FROM {TASK}.model_labels WHERE source IS DISTINCT FROM 'rule'"
    )
    assert heavy[0] == unsettled[0][0] > 0
    assert heavy[1] == 1


def test_without_clip_weights_images_are_labeled_from_metadata_text_visibly(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    d = _deploy(tmp_path, tiny_encoder_dir, None)
    result = d.run("2026-11-02", task=TASK)
    assert result.success
    mat = next(
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key.path == [TASK, "heavy_labels"]
    )
    heavy_status = mat.materialization.metadata["heavy_model"].value
    assert "no CLIP weights" in str(heavy_status)
    assert d.sql(f"SELECT count(*) FROM {TASK}.heavy_labels WHERE heavy_label IS NOT NULL") == [
        (0,)
    ]
    sources = {s for (s,) in d.sql(f"SELECT DISTINCT suggested_by FROM {TASK}.hitl_pending")}
    assert "model_text" in sources
    assert "model" not in sources


def test_unknown_route_label_gives_low_scoring_images_the_unknown_class(
    tmp_path: Path, tiny_encoder_dir: Path, clip_dir: Path
) -> None:
    d = _deploy(
        tmp_path,
        tiny_encoder_dir,
        clip_dir,
        images={"unknown_route": "label", "unknown_below": 1.0},
    )
    assert d.run("2026-11-02", task=TASK).success
    assert d.sql(f"SELECT count(*) FROM {TASK}.hitl_pending") == [(0,)]
    unknown = d.sql(f"SELECT count(*) FROM {TASK}.final_dataset WHERE label = 'unknown'")[0][0]
    non_rule = d.sql(f"SELECT count(*) FROM {TASK}.final_dataset WHERE source <> 'rule'")[0][0]
    assert unknown == non_rule > 0


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_coco_export_loads_in_pycocotools_and_review_round_trip_reaches_it(
    tmp_path: Path, tiny_encoder_dir: Path, clip_dir: Path
) -> None:
    from pycocotools.coco import COCO

    tasks, home = _tasks(tmp_path), tmp_path / "home"
    cli = Cli(home, tasks, tiny_encoder_dir)
    cli.env["ANNOTATION_CLIP"] = str(clip_dir)
    assert cli("run", TASK, "--drop", str(DEMO / "2026-11-02")).returncode == 0
    queue_file = tmp_path / "queue.json"
    p = cli("review", "export", TASK, "--out", str(queue_file), "--image-url-prefix", "http://h/")
    assert p.returncode == 0, p.stderr
    tasks_out = json.loads(queue_file.read_text())
    assert tasks_out and all(
        t["data"]["image"].startswith(f"http://h/drops/{TASK}/") for t in tasks_out
    )
    config = queue_file.with_name("queue.label_config.xml").read_text()
    assert '<Image name="image" value="$image"/>' in config and 'toName="image"' in config
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "record_id,label,annotator\n"
        + "".join(f"{t['data']['record_id']},home,ann\n" for t in tasks_out)
    )
    p = cli("review", "import", TASK, str(answers))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "export"
    p = cli("export", TASK, "--out", str(out))
    assert p.returncode == 0, p.stderr
    coco = COCO(str(out / f"{TASK}.coco.json"))
    spec = load_task_spec(SPEC)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == spec.label_names
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        final = dict(conn.execute(f"SELECT id, label FROM {TASK}.final_dataset").fetchall())
    images = coco.loadImgs(coco.getImgIds())
    assert len(images) == len(final)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for image in images:
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert names[ann["category_id"]] == final[image["record_id"]]
        assert ann["bbox"] == [0, 0, image["width"], image["height"]]
        assert (home / "drops" / TASK / image["file_name"]).is_file()
    humans = {t["data"]["record_id"] for t in tasks_out}
    assert humans and all(final[r] == "home" for r in humans)
    again = tmp_path / "again"
    assert cli("export", TASK, "--out", str(again)).returncode == 0
    first_ids = sorted(i["id"] for i in images)
    assert first_ids == sorted(COCO(str(again / f"{TASK}.coco.json")).getImgIds())
    blocked = tmp_path / "blocked"
    (blocked / f"{TASK}.coco.json").mkdir(parents=True)  # a folder where the file goes
    p = cli("export", TASK, "--out", str(blocked))
    assert p.returncode != 0
    expected = f"cannot write {blocked / (TASK + '.coco.json')}: Is a directory"
    assert p.stderr.strip() == f"annotate: error: {expected}"
    assert [f.name for f in blocked.iterdir()] == [f"{TASK}.coco.json"]


def test_an_image_record_without_a_file_gets_no_heavy_vote_and_the_rest_are_scored(
    tmp_path: Path, tiny_encoder_dir: Path, clip_dir: Path
) -> None:
    # Ingest always records the file; a table edited by hand (or by an older version) may
    # not. Such records must not stop the heavy stage: they simply get no CLIP vote.
    d = _deploy(tmp_path, tiny_encoder_dir, clip_dir)
    drop = "2026-11-02"
    assert d.run(drop, task=TASK).success
    scored = [
        r
        for (r,) in d.sql(
            f"SELECT record_id FROM {TASK}.heavy_labels"
            " WHERE drop_id = ? AND heavy_label IS NOT NULL ORDER BY record_id",
            drop,
        )
    ]
    assert len(scored) >= 3
    no_file, empty_file = scored[:2]
    d.sql(f"UPDATE {TASK}.normalized_records SET meta = '{{}}' WHERE record_id = ?", no_file)
    d.sql(
        f"UPDATE {TASK}.normalized_records SET meta = json_object('file', '') WHERE record_id = ?",
        empty_file,
    )
    job = d.defs.resolve_job_def(f"{TASK}_pipeline")
    result = job.execute_in_process(
        partition_key=drop,
        instance=d.instance,
        asset_selection=[dg.AssetKey([TASK, "heavy_labels"])],
    )
    assert result.success
    heavy = dict(
        d.sql(f"SELECT record_id, heavy_label FROM {TASK}.heavy_labels WHERE drop_id = ?", drop)
    )
    assert heavy[no_file] is None and heavy[empty_file] is None
    assert all(heavy[r] is not None for r in scored[2:])
    assert d.sql(f"SELECT count(*) FROM {TASK}.normalized_records WHERE drop_id = ?", drop) == [
        (len(heavy),)
    ]
