"""Zero-shot CLIP scoring with a tiny random-weight CLIP saved in a temporary folder."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotation_assets.core.clip import ClipScorer, resolve_clip_path, tiny_clip
from tools.make_demo_images import draw

LABELS = {"apparel": "clothing", "electronics": "", "home": "furniture and homeware"}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for i, kind in enumerate(["tshirt", "laptop", "chair", "mug", "phone"]):
        path = folder / f"{kind}.{'png' if i % 2 else 'jpg'}"
        draw(kind, i).save(path)
        paths.append(path)
    rgba = Image.new("RGBA", (40, 60), (0, 0, 0, 0))
    rgba.paste((0, 0, 200, 255), (10, 10, 30, 50))
    rgba.save(folder / "transparent.png")
    return [*paths, folder / "transparent.png"]


def test_scorer_loads_offline_and_names_its_version(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = ClipScorer(clip_dir)
    assert scorer.version.startswith(f"{clip_dir.name}@")
    assert scorer.version == ClipScorer(clip_dir).version


def test_probabilities_have_one_row_per_image_summing_to_one(
    clip_dir: Path, photos: list[Path]
) -> None:
    probs = ClipScorer(clip_dir, batch_size=4).predict_proba(photos, LABELS)
    assert probs.shape == (len(photos), len(LABELS))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs > 0).all()


def test_predictions_are_deterministic_and_batch_independent(
    clip_dir: Path, photos: list[Path]
) -> None:
    first = ClipScorer(clip_dir, batch_size=2).predict_proba(photos, LABELS)
    again = ClipScorer(clip_dir, batch_size=2).predict_proba(photos, LABELS)
    one_batch = ClipScorer(clip_dir, batch_size=64).predict_proba(photos, LABELS)
    assert np.array_equal(first, again)
    assert np.allclose(first, one_batch, atol=1e-5)


def test_columns_follow_the_label_order(clip_dir: Path, photos: list[Path]) -> None:
    scorer = ClipScorer(clip_dir)
    forward = scorer.predict_proba(photos, LABELS)
    backward = scorer.predict_proba(photos, dict(reversed(LABELS.items())))
    assert np.allclose(forward, backward[:, ::-1])


def test_descriptions_change_the_prompts(clip_dir: Path, photos: list[Path]) -> None:
    scorer = ClipScorer(clip_dir)
    with_descriptions = scorer.predict_proba(photos, LABELS)
    names_only = scorer.predict_proba(photos, list(LABELS))
    assert not np.allclose(with_descriptions, names_only)
    assert np.allclose(names_only, scorer.predict_proba(photos, dict.fromkeys(LABELS, "")))


def test_label_embedding_is_the_mean_over_templates(clip_dir: Path, photos: list[Path]) -> None:
    templates = ("a photo of {label}.", "a blurry picture of {label}")
    single = [ClipScorer(clip_dir, templates=(t,)).encode_labels(LABELS) for t in templates]
    both = ClipScorer(clip_dir, templates=templates)
    mean = single[0] + single[1]
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    assert np.allclose(both.encode_labels(LABELS), mean, atol=1e-5)
    one = ClipScorer(clip_dir, templates=templates[:1]).predict_proba(photos, LABELS)
    assert not np.allclose(both.predict_proba(photos, LABELS), one)


def test_unreadable_image_gets_a_uniform_row(
    clip_dir: Path, photos: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])
    probs = ClipScorer(clip_dir).predict_proba([photos[1], broken, tmp_path / "gone.png"], LABELS)
    assert np.allclose(probs[1:], 1 / 3)
    assert not np.allclose(probs[0], 1 / 3)


def test_templates_must_use_the_label_slot(clip_dir: Path) -> None:
    with pytest.raises(ValueError, match="label"):
        ClipScorer(clip_dir, templates=("a photo",))
    with pytest.raises(ValueError, match="label"):
        ClipScorer(clip_dir, templates=("a photo of {name}",))


def test_folder_without_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ClipScorer(tmp_path)


def test_resolve_clip_path_finds_local_folders_only(clip_dir: Path, tmp_path: Path) -> None:
    assert resolve_clip_path(str(clip_dir)) == clip_dir
    assert resolve_clip_path(None) is None
    assert resolve_clip_path("") is None
    assert resolve_clip_path(str(tmp_path)) is None  # a folder without config.json
    assert resolve_clip_path("nobody/no-such-clip-model", cache_dir=tmp_path) is None


def test_resolve_clip_path_reads_a_model_id_from_the_local_cache(tmp_path: Path) -> None:
    repo = tmp_path / "models--acme--tiny-clip"
    snapshot = repo / "snapshots" / ("0" * 40)
    tiny_clip(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    found = resolve_clip_path("acme/tiny-clip", cache_dir=tmp_path)
    assert found == snapshot
    assert found is not None and ClipScorer(found).predict_proba([], ["a", "b"]).shape == (0, 2)
