"""Image stages: decode + fingerprint (inspect_image) and the CLIP heavy stage, in images/s,
each beside a baseline measured in the same run.

    python bench/bench_images.py [--images 2000] [--clip PATH_OR_ID]

Baselines: Pillow's own open + full decode of the same files (what any pipeline must pay),
and CLIP's image preprocessing + vision forward pass on the same images, already decoded in
memory, with the same batch size (our stage adds reading the files and scoring the prompts).
The CLIP stage runs with a tiny random-weight CLIP built from a config; with --clip (or
$ANNOTATION_CLIP) pointing at real weights available offline it runs with those too."""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_assets.core.clip import ClipScorer, resolve_clip_path, tiny_clip  # noqa: E402
from annotation_assets.core.images import inspect_image  # noqa: E402

LABELS = {
    "apparel": "clothing such as t-shirts and hoodies",
    "electronics": "phones, laptops and headphones",
    "home": "furniture and homeware",
}


def make_images(folder: Path, n: int, *, size: int = 256, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            box = (
                sorted(rng.randrange(size) for _ in range(2)),
                sorted(rng.randrange(size) for _ in range(2)),
            )
            draw.rectangle(
                (box[0][0], box[1][0], box[0][1], box[1][1]),
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        path = folder / f"img-{i:05d}.{'jpg' if i % 2 else 'png'}"
        img.save(path, quality=88)
        paths.append(path)
    return paths


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_decode(paths: list[Path]) -> tuple[float, float]:
    start = time.perf_counter()
    for p in paths:
        inspect_image(p)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            img.load()
    base = time.perf_counter() - start
    return rate(len(paths), ours), rate(len(paths), base)


def bench_clip(scorer: ClipScorer, paths: list[Path]) -> tuple[float, float]:
    import torch

    scorer.predict_proba(paths[:8], LABELS)
    start = time.perf_counter()
    probs = scorer.predict_proba(paths, LABELS)
    ours = time.perf_counter() - start
    assert probs.shape == (len(paths), len(LABELS))
    images = [Image.open(p).convert("RGB") for p in paths]
    model, processor = scorer._model, scorer._processor  # the same loaded weights
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), scorer.batch_size):
            batch = processor.image_processor(
                images=images[i : i + scorer.batch_size], return_tensors="pt"
            )
            model.get_image_features(pixel_values=batch["pixel_values"])
    base = time.perf_counter() - start
    return rate(len(paths), ours), rate(len(paths), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--clip", default=os.environ.get("ANNOTATION_CLIP", ""))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images)
        print(f"{len(paths)} generated images, 256x256, half PNG half JPEG; {os.cpu_count()} cores")
        ours, base = bench_decode(paths)
        print(
            f"decode + hash (inspect_image): {ours:8.0f} images/s | baseline Pillow open+load "
            f"{base:8.0f} images/s | ratio {ours / base:.2f}x"
        )
        runs = [("tiny CLIP (random weights, from a config)", tiny_clip(folder / "tiny-clip"))]
        real = resolve_clip_path(args.clip) if args.clip else None
        if real is not None:
            runs.append((f"CLIP {real.name}", real))
        else:
            print(
                "real CLIP: no weights available offline (pass --clip PATH or set "
                "ANNOTATION_CLIP); skipped"
            )
        subset = paths[: min(len(paths), 512)]
        for name, path in runs:
            scorer = ClipScorer(path, batch_size=32)
            ours, base = bench_clip(scorer, subset)
            print(
                f"{name}: stage {ours:8.1f} images/s | baseline preprocess + vision forward "
                f"{base:8.1f} images/s | ratio {ours / base:.2f}x ({len(subset)} images)"
            )


if __name__ == "__main__":
    main()
