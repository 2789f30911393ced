"""Image drops: decoding and quarantine reasons, fingerprints, manifest join, near-duplicates."""

import hashlib
import json
import os
import shutil
import zlib
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from annotation_assets.core import image_dedup
from annotation_assets.core.image_dedup import _band_plan
from annotation_assets.core.images import (
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    DEFAULT_PHASH_MAX_DISTANCE,
    DUPLICATE_ENTRY,
    EMPTY_FILE,
    IMAGE_REASONS,
    MISSING_FILE,
    NOT_AN_IMAGE,
    ImageInfo,
    hamming_near_duplicates,
    image_text,
    inspect_image,
    iter_image_raw_chunks,
    phash,
)
from annotation_assets.core.ingest import (
    INVALID_ID,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    OUTSIDE_DROP,
    RAW_COLUMNS,
    UNREADABLE_FILE,
    UNSUPPORTED_FILE,
)
from tools.make_demo_images import DROPS_DIR as DEMO
from tools.make_demo_images import draw


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _info(path: Path, **options: Any) -> ImageInfo:
    result = inspect_image(path, **options)
    assert isinstance(result, ImageInfo), result
    return result


def _save(img: Image.Image, path: Path, **options: Any) -> Path:
    img.save(path, **options)
    return path


def _rows(drop: Path, **options: Any) -> list[dict[str, Any]]:
    chunks = list(iter_image_raw_chunks(drop, **options))
    for chunk in chunks:
        assert list(chunk.columns) == RAW_COLUMNS
    return pd.concat(chunks, ignore_index=True).to_dict("records") if chunks else []


def _by_file(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["source_file"]: r for r in rows if r["source_file"] != "manifest.jsonl"}


def _manifest(drop: Path, lines: list[Any]) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (drop / "manifest.jsonl").write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------ inspection


def test_inspect_image_measures_size_format_mode_bytes_and_hashes(tmp_path: Path) -> None:
    path = _save(draw("phone", 1).resize((120, 80)), tmp_path / "phone.png")
    info = _info(path)
    assert (info.width, info.height, info.format, info.mode) == (120, 80, "PNG", "RGB")
    assert info.bytes == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(info.phash) == 16 and int(info.phash, 16) >= 0


def test_gif_first_frame_and_webp_decode(tmp_path: Path) -> None:
    frames = [draw("mug", 1), draw("lamp", 2)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    webp = _save(draw("chair", 3), tmp_path / "chair.webp", quality=80)
    gif_info, webp_info = _info(gif), _info(webp)
    assert (gif_info.format, gif_info.width) == ("GIF", 96)
    assert (webp_info.format, webp_info.mode) == ("WEBP", "RGB")
    first_frame = _info(_save(frames[0], tmp_path / "mug.png"))
    assert _distance(gif_info.phash, first_frame.phash) <= DEFAULT_PHASH_MAX_DISTANCE


def test_zero_byte_file_is_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    assert inspect_image(tmp_path / "a.jpg")[0] == EMPTY_FILE


def test_text_saved_as_jpg_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("<html>403 Forbidden</html>\n")
    assert inspect_image(tmp_path / "a.jpg")[0] == NOT_AN_IMAGE


def test_image_in_another_format_is_not_an_image(tmp_path: Path) -> None:
    bmp = _save(draw("mug", 1), tmp_path / "mug.png", format="BMP")
    assert inspect_image(bmp)[0] == NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_corrupt(tmp_path: Path, fmt: str) -> None:
    path = _save(draw("noise", 1).resize((256, 256)), tmp_path / "full", format=fmt)
    data = path.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    assert inspect_image(cut)[0] == CORRUPT_IMAGE
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_damaged_header_with_image_magic_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert inspect_image(path)[0] == CORRUPT_IMAGE


def test_too_many_pixels_is_a_bomb_rejected_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(draw("lamp", 1), tmp_path / "lamp.png")

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    result = inspect_image(path, max_pixels=96 * 96 - 1)
    assert not isinstance(result, ImageInfo)
    assert result[0] == DECOMPRESSION_BOMB and "96x96" in result[1]


@pytest.mark.parametrize("pillow_limit", [4000, 9000])  # error above 2x, warning above 1x
def test_pillow_bomb_limits_are_decompression_bombs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int
) -> None:
    path = _save(draw("lamp", 1), tmp_path / "lamp.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    assert inspect_image(path, max_pixels=10**9)[0] == DECOMPRESSION_BOMB


def test_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    assert inspect_image(tmp_path / "gone.jpg")[0] == "unreadable_file"


# ---------------------------------------------------------------------------- fingerprints


def test_exact_copy_has_same_sha256_and_reencoding_does_not(tmp_path: Path) -> None:
    original = _save(draw("tshirt", 1), tmp_path / "a.png")
    copy = tmp_path / "b.png"
    shutil.copyfile(original, copy)
    reencoded = _save(Image.open(original).convert("RGB"), tmp_path / "c.jpg", quality=90)
    assert _info(original).sha256 == _info(copy).sha256
    assert _info(original).sha256 != _info(reencoded).sha256


def test_phash_close_for_reencoded_resized_or_shifted_copies(tmp_path: Path) -> None:
    base = _info(_save(draw("laptop", 7), tmp_path / "a.png")).phash
    jpeg = _info(_save(draw("laptop", 7), tmp_path / "b.jpg", quality=60)).phash
    shifted = _info(_save(draw("laptop", 7, shift=2), tmp_path / "c.jpg", quality=75)).phash
    big = draw("laptop", 7).resize((800, 800), Image.Resampling.BICUBIC)
    large_jpeg = _info(_save(big, tmp_path / "d.jpg", quality=85)).phash  # decoded via draft
    for other in (jpeg, shifted, large_jpeg):
        assert _distance(base, other) <= DEFAULT_PHASH_MAX_DISTANCE


def test_phash_far_for_different_drawings(tmp_path: Path) -> None:
    hashes = [phash(draw(kind, seed)) for kind, seed in [("laptop", 7), ("laptop", 8), ("mug", 7)]]
    assert _distance(hashes[0], hashes[1]) > DEFAULT_PHASH_MAX_DISTANCE
    assert _distance(hashes[0], hashes[2]) > DEFAULT_PHASH_MAX_DISTANCE


def test_phash_follows_the_dct_definition() -> None:
    from scipy.fftpack import dct

    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.random((70, 50, 3)) * 255).astype(np.uint8))
    gray = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    low = dct(dct(np.asarray(gray, dtype=float), axis=0), axis=1)[:8, :8]
    bits = "".join("1" if b else "0" for b in (low > np.median(low)).ravel())
    assert phash(img) == f"{int(bits, 2):016x}"


def test_phash_composites_transparency_onto_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (16, 16, 48, 48))
    flat = Image.new("RGB", (64, 64), "white")
    flat.paste((200, 0, 0), (16, 16, 48, 48))
    assert phash(rgba) == phash(flat)


# ------------------------------------------------------------------------- near duplicates


def _reference(new: list[int], old: list[int], max_distance: int) -> list[tuple[str, str, int]]:
    """hamming_near_duplicates straight from its definition, one record at a time."""
    kept: list[int] = []
    out = []
    for i, h in enumerate(new):
        olds = [((h ^ o).bit_count(), j) for j, o in enumerate(old)]
        news = [((h ^ new[j]).bit_count(), j) for j in kept]
        best_old = min((c for c in olds if c[0] <= max_distance), default=None)
        best_new = min((c for c in news if c[0] <= max_distance), default=None)
        if best_new and (best_old is None or best_new[0] < best_old[0]):
            out.append((f"n{i}", f"n{best_new[1]}", best_new[0]))
        elif best_old:
            out.append((f"n{i}", f"o{best_old[1]}", best_old[0]))
        else:
            kept.append(i)
    return out


def _near(new: list[int], old: list[int], d: int = 6) -> list[tuple[str, str, int]]:
    return hamming_near_duplicates(
        [f"n{i}" for i in range(len(new))],
        np.array(new, dtype=np.uint64),
        [f"o{i}" for i in range(len(old))],
        np.array(old, dtype=np.uint64),
        max_distance=d,
    )


A = 0x0123456789ABCDEF
B = 0xFEDCBA9876543210


def test_within_batch_duplicate_points_to_earlier_kept_image() -> None:
    assert _near([A, A ^ 0b101, B], []) == [("n1", "n0", 2)]


def test_old_image_preferred_on_equal_distance() -> None:
    # A is kept (8 bits from the old image); the next image is 4 bits from both.
    assert _near([A, A ^ 0b1111], [A ^ 0b11111111]) == [("n1", "o0", 4)]
    assert _near([A ^ 0b1, A ^ 0b10], [A]) == [("n0", "o0", 1), ("n1", "o0", 1)]


def test_closer_earlier_new_image_beats_farther_old_one() -> None:
    # A is kept (7 bits from the old image); the next image is 1 bit from A, 6 from old.
    assert _near([A, A ^ 0b1], [A ^ 0b1111111]) == [("n1", "n0", 1)]


def test_duplicate_is_not_a_kept_image_for_later_ones() -> None:
    a, b, c = A, A ^ 0b1111, A ^ 0b11111111
    assert _near([a, b, c], []) == [("n1", "n0", 4)]


def test_earliest_old_image_wins_a_tie() -> None:
    assert _near([A], [B, A ^ 0b1, A ^ 0b10]) == [("n0", "o1", 1)]


def test_zero_distance_finds_only_identical_hashes() -> None:
    assert _near([A, A ^ 1, A], [], d=0) == [("n2", "n0", 0)]


def test_many_identical_hashes_point_to_the_first() -> None:
    pairs = _near([A] * 20_000, [])
    assert len(pairs) == 19_999 and {kept for _, kept, _ in pairs} == {"n0"}


def test_hex_strings_are_accepted() -> None:
    pairs = hamming_near_duplicates(["x"], [f"{A ^ 1:016x}"], ["y"], [f"{A:016x}"])
    assert pairs == [("x", "y", 1)]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="max_distance"):
        _near([A], [], d=64)
    with pytest.raises(ValueError, match="shape"):
        hamming_near_duplicates(["a", "b"], np.array([A], dtype=np.uint64), [], [])


@pytest.mark.parametrize("max_distance", [0, 3, 6, 10])
def test_banded_search_matches_all_pairs_reference(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    centers = rng.integers(0, 2**63, size=300, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    def cluster_members(n: int) -> list[int]:
        out = []
        for _ in range(n):
            h = int(centers[rng.integers(0, centers.size)])
            for bit in rng.choice(64, size=int(rng.integers(0, 9)), replace=False):
                h ^= 1 << int(bit)
            out.append(h)
        return out

    new, old = cluster_members(1500), cluster_members(1500)
    if max_distance <= 6:
        assert _band_plan(max_distance, 1500, 1500) is not None  # the banded path is tested
    assert _near(new, old, max_distance) == _reference(new, old, max_distance)


def _near_copies(rng: np.random.Generator, centers: list[int], n: int, most_bits: int) -> list[int]:
    """n hashes, each a random center with up to `most_bits` random bits flipped."""
    out = []
    for _ in range(n):
        h = centers[int(rng.integers(0, len(centers)))]
        for bit in rng.choice(64, size=int(rng.integers(0, most_bits + 1)), replace=False):
            h ^= 1 << int(bit)
        out.append(h)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_crowded_drops_split_the_search_and_match_the_reference(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dense clusters (every member within 6 bits of the others) among scattered hashes, with
    # limits small enough that the search of kept images splits groups several levels deep.
    monkeypatch.setattr(image_dedup, "_SMALL_GROUP", 16)
    monkeypatch.setattr(image_dedup, "_CLOSE_PAIRS_PER_SEARCH", 200)
    rng = np.random.default_rng(seed)
    centers = [int(c) for c in rng.integers(0, 2**63, size=8, dtype=np.uint64)]
    scattered = [int(h) for h in rng.integers(0, 2**63, size=300, dtype=np.uint64)]
    new = _near_copies(rng, centers[:6], 500, 3) + scattered
    rng.shuffle(new)
    old = _near_copies(rng, centers[4:], 40, 4) + scattered[:20]
    for d in (3, 6, 9):
        assert _near(new, old, d) == _reference(new, old, d)
        assert _near(new, [], d) == _reference(new, [], d)


@pytest.mark.parametrize("max_distance", [0, 2, 6, 12])
@pytest.mark.parametrize("part", [7, None])
def test_close_pairs_lists_each_close_pair_once(
    max_distance: int, part: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if part is not None:  # candidates met in parts of at most 7 (but one band key's)
        monkeypatch.setattr(image_dedup, "_CANDIDATES_PER_PART", part)
    rng = np.random.default_rng(max_distance)
    centers = [int(c) for c in rng.integers(0, 2**63, size=20, dtype=np.uint64)]
    query = np.array(_near_copies(rng, centers, 800, 8), dtype=np.uint64)
    pool = np.array(_near_copies(rng, centers, 700, 8), dtype=np.uint64)
    assert image_dedup._band_plan(max_distance, query.size, pool.size) is not None
    qi, pi, dist = image_dedup._close_pairs(query, pool, max_distance)
    expected = {
        (q, p, (int(a) ^ int(b)).bit_count())
        for q, a in enumerate(query)
        for p, b in enumerate(pool)
        if (int(a) ^ int(b)).bit_count() <= max_distance
    }
    found = list(zip(qi.tolist(), pi.tolist(), dist.tolist(), strict=True))
    assert len(found) == len(set(found)) and set(found) == expected
    if len(expected) > 1:
        with pytest.raises(image_dedup.TooManyPairs):
            image_dedup._close_pairs(query, pool, max_distance, limit=len(expected) - 1)


@pytest.mark.parametrize("old_copies", [0, 1500])
def test_near_copies_of_one_picture_hold_few_pairs_at_once(
    old_copies: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000 distinct new hashes within 6 bits of each other (4.5M close pairs among them, one
    # kept), and maybe 1,500 old ones too (a threshold raised since they were kept): every
    # search meets its candidates in parts of at most its limit, returns at most its limit of
    # close pairs, and one that gives up does so before meeting all its candidates.
    limit = 20_000
    monkeypatch.setattr(image_dedup, "_SMALL_GROUP", 64)
    monkeypatch.setattr(image_dedup, "_CLOSE_PAIRS_PER_SEARCH", limit)
    search, parts = image_dedup._close_pairs, image_dedup.equal_key_pair_parts
    met = [0]
    searching: list[int | None] = [None]
    gave_up: list[tuple[int, int]] = []
    returned: list[int] = []

    def counting_parts(sorted_keys: Any, wanted: Any, most: int) -> Any:
        for which, positions in parts(sorted_keys, wanted, most):
            most_held = searching[0] or image_dedup._CANDIDATES_PER_PART
            assert which.size <= most_held or np.unique(which).size == 1
            met[0] += which.size
            yield which, positions

    def counting_search(*args: Any, limit: int | None = None) -> Any:
        met[0], searching[0] = 0, limit
        try:
            found = search(*args, limit=limit)
        except image_dedup.TooManyPairs:
            before = met[0]
            met[0], searching[0] = 0, None
            search(*args)
            gave_up.append((before, met[0]))
            raise
        if limit is not None:
            returned.append(found[0].size)
        return found

    monkeypatch.setattr(image_dedup, "_close_pairs", counting_search)
    monkeypatch.setattr(image_dedup, "equal_key_pair_parts", counting_parts)
    rng = np.random.default_rng(3)
    masks = [sum(1 << b for b in bits) for r in range(4) for bits in combinations(range(64), r)]
    chosen = rng.choice(len(masks), size=3000 + old_copies, replace=False)
    new = [A ^ masks[i] for i in chosen[:3000]]
    old = [A ^ masks[i] for i in chosen[3000:]]
    pairs = _near(new, old)
    assert pairs == _reference(new, old, 6)
    if not old:
        assert {kept for _, kept, _ in pairs} == {"n0"}
    assert gave_up and all(before < everything for before, everything in gave_up)
    assert max(returned) <= limit


def test_hundred_thousand_by_hundred_thousand_is_fast() -> None:
    import time

    rng = np.random.default_rng(0)
    old = rng.integers(0, 2**64 - 1, size=100_000, dtype=np.uint64)
    new = rng.integers(0, 2**64 - 1, size=100_000, dtype=np.uint64)
    new[:100] = old[:100] ^ np.uint64(0b111)
    start = time.perf_counter()
    pairs = hamming_near_duplicates(
        [f"n{i}" for i in range(new.size)], new, [f"o{i}" for i in range(old.size)], old
    )
    assert time.perf_counter() - start < 30
    assert pairs[:100] == [(f"n{i}", f"o{i}", 3) for i in range(100)]


# ----------------------------------------------------------------------------- drop rows


def test_text_from_title_alt_and_file_name() -> None:
    assert image_text("shoes/red-running-shoe.jpg") == "red running shoe"
    assert image_text("IMG_01.jpg", "Trail shoe", "Red shoe, side view") == (
        "Trail shoe. Red shoe, side view. IMG 01"
    )
    assert image_text("red-shoe.jpg", "Red shoe", "red  shoe.") == "Red shoe"
    assert image_text("_-.jpg") == "_-.jpg"


def test_manifest_fields_join_images(tmp_path: Path) -> None:
    _save(draw("tshirt", 1), tmp_path / "navy-tee.png")
    (tmp_path / "sub").mkdir()
    _save(draw("mug", 2), tmp_path / "sub" / "IMG_7.jpg")
    line = {
        "id": "p-1",
        "file": "navy-tee.png",
        "title": "Navy T-shirt",
        "alt": "Cotton tee, front",
        "url": "https://shop.example/p-1",
        "price": 12.5,
    }
    _manifest(tmp_path, [line])
    rows = _by_file(_rows(tmp_path))
    tee, mug = rows["navy-tee.png"], rows["sub/IMG_7.jpg"]
    assert tee["record_id"] == "p-1" and tee["error"] is None
    assert tee["text"] == "Navy T-shirt. Cotton tee, front"
    meta = json.loads(tee["meta"])
    assert meta["file"] == "navy-tee.png" and meta["url"] == line["url"] and meta["price"] == 12.5
    assert {"width", "height", "format", "mode", "bytes", "sha256", "phash"} <= meta.keys()
    assert json.loads(tee["payload"]) == line
    assert mug["record_id"] == "sub/IMG_7.jpg" and mug["text"] == "IMG 7"
    assert json.loads(mug["payload"])["sha256"] == json.loads(mug["meta"])["sha256"]


def test_manifest_problems_become_reason_rows(tmp_path: Path) -> None:
    _save(draw("lamp", 1), tmp_path / "lamp.png")
    _manifest(
        tmp_path,
        [
            {"id": "1", "file": "lamp.png", "title": "Lamp"},
            '{"id": "2", "file": "broken.png"',
            {"id": "3", "file": "IMG_404.jpg"},
            {"id": "4", "file": "../other-drop/lamp.png"},
            {"id": "5", "file": "/etc/passwd"},
            {"id": "6", "file": "lamp.png", "title": "Lamp again"},
            {"id": "7"},
            "[1, 2]",
        ],
    )
    rows = _rows(tmp_path)
    manifest = {
        int(r["line_no"]): (r["error"], r["payload"]) for r in rows if pd.notna(r["line_no"])
    }
    assert {n: e for n, (e, _) in manifest.items()} == {
        2: MALFORMED_JSON,
        3: MISSING_FILE,
        4: OUTSIDE_DROP,
        5: OUTSIDE_DROP,
        6: DUPLICATE_ENTRY,
        7: MISSING_FILE,
        8: NOT_AN_OBJECT,
    }
    assert manifest[3][1] == json.dumps({"id": "3", "file": "IMG_404.jpg"})
    assert _by_file(rows)["lamp.png"]["record_id"] == "1"
    assert {r["error"] for r in rows} - {None} <= set(IMAGE_REASONS)


def test_bad_files_keep_their_manifest_line_and_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<html></html>")
    (tmp_path / "notes.txt").write_text("hello")
    _save(draw("mug", 1), tmp_path / "bad-id.png")
    _manifest(
        tmp_path,
        [
            {"id": "e", "file": "empty.jpg", "title": "Empty"},
            {"id": {"x": 1}, "file": "bad-id.png"},
        ],
    )
    rows = _by_file(_rows(tmp_path))
    assert (rows["empty.jpg"]["error"], rows["empty.jpg"]["record_id"]) == (EMPTY_FILE, "e")
    assert json.loads(rows["empty.jpg"]["payload"])["title"] == "Empty"
    assert rows["page.jpg"]["error"] == NOT_AN_IMAGE
    assert rows["notes.txt"]["error"] == UNSUPPORTED_FILE
    assert rows["bad-id.png"]["error"] == INVALID_ID
    assert all(r["text"] is None and r["meta"] is None for r in rows.values())


def test_hidden_and_marker_files_are_skipped(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    _save(draw("mug", 1), tmp_path / ".thumb.png")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / "_staging").mkdir()
    _save(draw("mug", 1), tmp_path / "_staging" / "x.png")
    assert [r["source_file"] for r in _rows(tmp_path)] == ["mug.png"]


def test_symlinks_outside_the_drop_are_never_read(tmp_path: Path) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    drop.mkdir()
    outside.mkdir()
    _save(draw("mug", 1), outside / "secret.png")
    _save(draw("lamp", 1), drop / "lamp.png")
    os.symlink(outside / "secret.png", drop / "secret.png")
    os.symlink(drop / "lamp.png", drop / "lamp-link.png")
    os.symlink(outside, drop / "folder")
    (outside / "manifest.jsonl").write_text(json.dumps({"id": "x", "file": "lamp.png"}) + "\n")
    os.symlink(outside / "manifest.jsonl", drop / "manifest.jsonl")
    all_rows = _rows(drop)
    (manifest,) = [r for r in all_rows if r["source_file"] == "manifest.jsonl"]
    assert manifest["error"] == OUTSIDE_DROP
    rows = _by_file(all_rows)
    assert rows["lamp.png"]["record_id"] == "lamp.png"
    assert rows["secret.png"]["error"] == OUTSIDE_DROP
    assert rows["folder"]["error"] == OUTSIDE_DROP
    assert rows["lamp-link.png"]["error"] is None


def test_chunks_hold_at_most_chunk_size_rows(tmp_path: Path) -> None:
    for i in range(5):
        _save(draw("mug", i), tmp_path / f"m{i}.png")
    sizes = [len(c) for c in iter_image_raw_chunks(tmp_path, chunk_size=2)]
    assert sizes == [2, 2, 1]


def test_id_field_selects_the_manifest_id(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    _manifest(tmp_path, [{"sku": "SKU-9", "id": "ignored", "file": "mug.png"}])
    (row,) = _rows(tmp_path, id_field="sku")
    assert row["record_id"] == "SKU-9"
    assert json.loads(row["meta"])["id"] == "ignored"


def test_a_dotted_id_field_reads_a_nested_manifest_id(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    _manifest(tmp_path, [{"product": {"sku": "SKU-9", "brand": "Acme"}, "file": "mug.png"}])
    (row,) = _rows(tmp_path, id_field="product.sku")
    assert row["record_id"] == "SKU-9"
    assert json.loads(row["meta"])["product"] == {"brand": "Acme"}


def test_whole_float_manifest_ids_are_integers_and_fractions_are_refused(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    _save(draw("lamp", 2), tmp_path / "lamp.png")
    _manifest(tmp_path, [{"id": 6.0, "file": "mug.png"}, {"id": 6.5, "file": "lamp.png"}])
    rows = _by_file(_rows(tmp_path))
    assert (rows["mug.png"]["record_id"], rows["mug.png"]["error"]) == ("6", None)
    assert rows["lamp.png"]["error"] == INVALID_ID
    assert rows["lamp.png"]["detail"] == "field 'id': float 6.5 is not a whole number"


def test_max_pixels_applies_to_drop_rows(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    (row,) = _rows(tmp_path, max_pixels=100)
    assert row["error"] == DECOMPRESSION_BOMB


def test_symlink_loops_are_unreadable_not_a_crash(tmp_path: Path) -> None:
    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "b.png")
    os.symlink("manifest.jsonl", tmp_path / "manifest.jsonl")
    rows = _rows(tmp_path)
    assert sorted((r["source_file"], r["error"], r["detail"]) for r in rows) == [
        ("a.png", UNREADABLE_FILE, "symlink loop"),
        ("b.png", UNREADABLE_FILE, "symlink loop"),
        ("manifest.jsonl", UNREADABLE_FILE, "symlink loop"),
    ]


def test_image_name_that_is_not_utf8_is_refused_with_its_bytes_escaped(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / os.fsdecode(b"mug\xff.png"))
    (row,) = _rows(tmp_path)
    assert (row["source_file"], row["error"]) == ("mug\\xff.png", UNSUPPORTED_FILE)
    row["payload"].encode("utf-8")


def test_lone_surrogates_in_manifest_title_and_id(tmp_path: Path) -> None:
    _save(draw("mug", 1), tmp_path / "mug.png")
    _save(draw("lamp", 1), tmp_path / "lamp.png")
    _manifest(
        tmp_path,
        [
            {"file": "mug.png", "title": "half \ud83d mug", "note": "x\udc00"},
            {"file": "lamp.png", "id": "lamp\ud800"},
        ],
    )
    rows = _by_file(_rows(tmp_path))
    assert rows["lamp.png"]["error"] == INVALID_ID
    mug = rows["mug.png"]
    assert mug["error"] is None
    assert mug["text"].startswith("half  mug")
    assert json.loads(mug["meta"])["note"] == "x\ufffd"


@pytest.mark.parametrize("chunk", [b"zTXt", b"iCCP"])
def test_png_text_or_profile_chunk_bomb_is_a_decompression_bomb(
    tmp_path: Path, chunk: bytes
) -> None:
    def png_chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    body = (b"Comment" if chunk == b"zTXt" else b"icc") + b"\x00\x00"
    body += zlib.compress(b"\x00" * (8 << 20), 9)
    ihdr = png_chunk(b"IHDR", (16).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * (16 * 49)))
    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(chunk, body) + idat + png_chunk(b"IEND", b"")
    )
    assert inspect_image(path)[0] == DECOMPRESSION_BOMB


# ------------------------------------------------------------------------------ demo drops


def test_demo_drops_hold_every_bad_kind_and_their_duplicates() -> None:
    first = _rows(DEMO / "2026-11-02")
    second = _rows(DEMO / "2026-11-09")
    errors = sorted(r["error"] for r in first if r["error"])
    assert errors == sorted([CORRUPT_IMAGE, EMPTY_FILE, NOT_AN_IMAGE, MISSING_FILE])
    assert not any(r["error"] for r in second)
    meta = {
        (drop, r["source_file"]): json.loads(r["meta"])
        for drop, rows in (("1", first), ("2", second))
        for r in rows
        if r["meta"]
    }
    for a, b in [
        (("1", "oak-dining-chair.png"), ("1", "oak-dining-chair-copy.png")),
        (("1", "stoneware-mug.png"), ("2", "mug-350ml.png")),
    ]:
        assert meta[a]["sha256"] == meta[b]["sha256"]
    for a, b in [
        (("1", "navy-cotton-tshirt.png"), ("1", "navy-cotton-tshirt-2.jpg")),
        (("1", "ultrabook-14.jpg"), ("2", "ultrabook-14-inch.png")),
    ]:
        assert meta[a]["sha256"] != meta[b]["sha256"]
        assert _distance(meta[a]["phash"], meta[b]["phash"]) <= DEFAULT_PHASH_MAX_DISTANCE
    unique = {m["sha256"]: m["phash"] for m in meta.values()}
    hashes = np.array([int(h, 16) for h in unique.values()], dtype=np.uint64)
    keys = list(unique)
    pairs = hamming_near_duplicates(keys, hashes, [], np.zeros(0, dtype=np.uint64))
    assert len(pairs) == 2
    assert sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) < 300_000
