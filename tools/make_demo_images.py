"""Regenerate the bundled demo image drops under annotation_assets/demo_data/drops/product_images/
(deterministic).

Run from the project root: python -m tools.make_demo_images

Two drops of small (96 x 96) product-like drawings with a ``manifest.jsonl`` each:
apparel (t-shirts, hoodies, trousers, dresses), electronics (phones, laptops, headphones,
monitors), home (chairs, lamps, mugs, tables) and unknown (abstract noise), PNG and JPEG mixed.

- 2026-11-02: 24 images, plus a truncated JPEG, a zero-byte file, an HTML error page saved as
  .jpg, an exact copy of an image under a new name, a near duplicate (the same drawing shifted
  by a pixel and saved as a JPEG at another quality), and a manifest line naming a file that is
  not in the drop.
- 2026-11-09: 20 images (one GIF, one WebP, one without a manifest line), plus an exact copy
  and a re-encoded near duplicate of images of the first drop.
"""

import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEMO_DATA = Path(__file__).resolve().parents[1] / "annotation_assets" / "demo_data"
DROPS_DIR = DEMO_DATA / "drops" / "product_images"
SIZE = 96
URL = "https://shop.example.com/p/"

Color = tuple[int, int, int]
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Item:
    kind: str
    label: str
    title: str
    alt: str
    file: str


class _Pen:
    """Draws unit-square shapes at an offset and scale on a 96 x 96 canvas."""

    def __init__(self, img: Image.Image, rng: random.Random) -> None:
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.scale = SIZE * rng.uniform(0.6, 0.95)
        room = SIZE - self.scale
        self.dx, self.dy = rng.uniform(0, room), rng.uniform(0, room)

    def xy(self, points: Points) -> list[tuple[float, float]]:
        return [(self.dx + x * self.scale, self.dy + y * self.scale) for x, y in points]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = self.xy([(x0, y0), (x1, y1)])
        return [a, b, c, d]

    def polygon(self, points: Points, fill: Color) -> None:
        self.draw.polygon(self.xy(points), fill=fill, outline=_darker(fill))

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: Color, r: float = 0) -> None:
        box = self.box(x0, y0, x1, y1)
        radius = int(r * self.scale)
        self.draw.rounded_rectangle(box, radius=radius, fill=fill, outline=_darker(fill))

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: Color | None) -> None:
        outline = _darker(fill) if fill else (40, 40, 40)
        self.draw.ellipse(self.box(x0, y0, x1, y1), fill=fill, outline=outline, width=2)

    def line(self, points: Points, fill: Color, width: float) -> None:
        self.draw.line(self.xy(points), fill=fill, width=max(1, int(width * self.scale)))

    def arc(self, box: tuple[float, float, float, float], fill: Color, width: float) -> None:
        self.draw.arc(self.box(*box), 180, 360, fill=fill, width=max(1, int(width * self.scale)))


def _darker(color: Color) -> Color:
    r, g, b = color
    return (r // 2, g // 2, b // 2)


def _strong(rng: random.Random) -> Color:
    hue = rng.random()
    r, g, b = (int(127 + 120 * math.cos(2 * math.pi * (hue + k / 3))) for k in range(3))
    return (r, g, b)


def _background(rng: random.Random) -> Image.Image:
    """A light two-colour gradient in a random direction."""
    a = np.array([rng.randint(170, 250) for _ in range(3)], dtype=np.float64)
    b = np.array([rng.randint(170, 250) for _ in range(3)], dtype=np.float64)
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    t = (x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8), "RGB")


def tshirt(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    body = [(0.32, 0.12), (0.42, 0.12), (0.5, 0.2), (0.58, 0.12), (0.68, 0.12), (0.92, 0.32)]
    body += [(0.8, 0.45), (0.72, 0.38), (0.72, 0.92), (0.28, 0.92), (0.28, 0.38), (0.2, 0.45)]
    pen.polygon([*body, (0.08, 0.32)], color)
    if rng.random() < 0.5:
        for y in (0.5, 0.62, 0.74):
            pen.rect(0.28, y, 0.72, y + 0.05, _strong(rng))


def hoodie(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    pen.ellipse(0.34, 0.02, 0.66, 0.3, color)
    body = [(0.3, 0.14), (0.7, 0.14), (0.95, 0.78), (0.84, 0.82), (0.72, 0.45), (0.72, 0.95)]
    pen.polygon([*body, (0.28, 0.95), (0.28, 0.45), (0.16, 0.82), (0.05, 0.78)], color)
    pen.rect(0.36, 0.62, 0.64, 0.8, _darker(color), r=0.04)


def trousers(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    legs = [(0.3, 0.05), (0.7, 0.05), (0.76, 0.95), (0.56, 0.95), (0.5, 0.35), (0.44, 0.95)]
    pen.polygon([*legs, (0.24, 0.95)], color)
    pen.rect(0.3, 0.05, 0.7, 0.12, _darker(color))


def dress(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    shape = [(0.4, 0.05), (0.6, 0.05), (0.62, 0.32), (0.86, 0.95), (0.14, 0.95), (0.38, 0.32)]
    pen.polygon(shape, color)
    pen.rect(0.37, 0.3, 0.63, 0.36, _strong(rng))


def phone(pen: _Pen, rng: random.Random) -> None:
    pen.rect(0.3, 0.04, 0.7, 0.96, (30, 30, 35), r=0.08)
    pen.rect(0.34, 0.12, 0.66, 0.84, _strong(rng))
    pen.ellipse(0.46, 0.87, 0.54, 0.93, (90, 90, 90))


def laptop(pen: _Pen, rng: random.Random) -> None:
    pen.rect(0.16, 0.14, 0.84, 0.62, (45, 45, 50), r=0.03)
    pen.rect(0.2, 0.18, 0.8, 0.58, _strong(rng))
    pen.polygon([(0.12, 0.64), (0.88, 0.64), (0.98, 0.8), (0.02, 0.8)], (150, 150, 160))


def headphones(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    pen.arc((0.18, 0.08, 0.82, 0.8), (40, 40, 40), 0.07)
    pen.rect(0.1, 0.42, 0.28, 0.8, color, r=0.06)
    pen.rect(0.72, 0.42, 0.9, 0.8, color, r=0.06)


def monitor(pen: _Pen, rng: random.Random) -> None:
    pen.rect(0.05, 0.1, 0.95, 0.66, (25, 25, 30), r=0.02)
    pen.rect(0.09, 0.14, 0.91, 0.62, _strong(rng))
    pen.rect(0.46, 0.66, 0.54, 0.84, (80, 80, 80))
    pen.rect(0.3, 0.84, 0.7, 0.9, (80, 80, 80), r=0.02)


def chair(pen: _Pen, rng: random.Random) -> None:
    wood = (rng.randint(110, 160), rng.randint(70, 100), rng.randint(30, 60))
    pen.rect(0.28, 0.05, 0.36, 0.56, wood)
    pen.rect(0.28, 0.5, 0.74, 0.58, wood)
    pen.line([(0.31, 0.58), (0.31, 0.95)], wood, 0.05)
    pen.line([(0.7, 0.58), (0.7, 0.95)], wood, 0.05)


def lamp(pen: _Pen, rng: random.Random) -> None:
    pen.polygon([(0.36, 0.06), (0.64, 0.06), (0.8, 0.38), (0.2, 0.38)], _strong(rng))
    pen.rect(0.47, 0.38, 0.53, 0.86, (60, 60, 60))
    pen.ellipse(0.3, 0.84, 0.7, 0.95, (60, 60, 60))


def mug(pen: _Pen, rng: random.Random) -> None:
    color = _strong(rng)
    pen.ellipse(0.56, 0.38, 0.86, 0.72, None)
    pen.rect(0.2, 0.28, 0.66, 0.88, color, r=0.05)


def table(pen: _Pen, rng: random.Random) -> None:
    wood = (rng.randint(120, 170), rng.randint(80, 110), rng.randint(40, 70))
    pen.rect(0.05, 0.36, 0.95, 0.46, wood)
    for x in (0.12, 0.84):
        pen.rect(x, 0.46, x + 0.05, 0.92, wood)


def noise(pen: _Pen, rng: random.Random) -> None:
    cells = np.array([[rng.randint(0, 255) for _ in range(6 * 3)] for _ in range(6)])
    blobs = Image.fromarray(cells.reshape(6, 6, 3).astype(np.uint8), "RGB")
    pen.img.paste(blobs.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    for _ in range(4):
        x, y, r = rng.random(), rng.random(), rng.uniform(0.05, 0.2)
        pen.ellipse(x - r, y - r, x + r, y + r, _strong(rng))


DRAWINGS: dict[str, Callable[[_Pen, random.Random], None]] = {
    "tshirt": tshirt,
    "hoodie": hoodie,
    "trousers": trousers,
    "dress": dress,
    "phone": phone,
    "laptop": laptop,
    "headphones": headphones,
    "monitor": monitor,
    "chair": chair,
    "lamp": lamp,
    "mug": mug,
    "table": table,
    "noise": noise,
}


def draw(kind: str, seed: int, *, shift: int = 0) -> Image.Image:
    """One deterministic picture of `kind`; `shift` moves it right by that many pixels."""
    rng = random.Random(seed)
    img = _background(rng).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    DRAWINGS[kind](_Pen(layer, rng), rng)
    angle = rng.uniform(-25, 25)
    img = Image.alpha_composite(img, layer.rotate(angle, Image.Resampling.BICUBIC)).convert("RGB")
    if shift:
        img = Image.fromarray(np.roll(np.asarray(img), shift, axis=1))
    return img


def _save(img: Image.Image, path: Path, *, quality: int = 85) -> None:
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        img.save(path, "JPEG", quality=quality, optimize=True)
    elif suffix == ".png":
        img.save(path, "PNG", optimize=True)
    elif suffix == ".gif":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(path, "GIF")
    else:
        img.save(path, "WEBP", quality=80, method=4)


DROP_1102: list[tuple[str, str, str, str, str]] = [
    # kind, file, title, alt, label
    ("tshirt", "navy-cotton-tshirt.png", "Classic cotton T-shirt", "Crew-neck tee", "apparel"),
    ("tshirt", "IMG_0412.jpg", "Striped tee, relaxed fit", "Striped shirt", "apparel"),
    ("hoodie", "zip-hoodie.jpg", "Zip hoodie with kangaroo pocket", "", "apparel"),
    ("trousers", "chino-trousers.png", "Slim chino trousers", "Trousers, front", "apparel"),
    ("dress", "summer-dress.jpg", "Summer dress with belt", "A-line dress", "apparel"),
    ("hoodie", "p-88213.png", "Product 88213", "", "apparel"),
    ("tshirt", "graphic-tee.jpg", "Graphic T-shirt", "", "apparel"),
    ("phone", "smartphone-6in.png", "Smartphone 6.1 inch, 128 GB", "Phone, front", "electronics"),
    ("laptop", "ultrabook-14.jpg", "14-inch laptop, 16 GB RAM", "Open laptop", "electronics"),
    ("headphones", "over-ear-headphones.png", "Over-ear headphones", "", "electronics"),
    ("monitor", "monitor-27.jpg", "27-inch monitor", "Monitor on a stand", "electronics"),
    ("phone", "IMG_0533.jpg", "Item 533", "", "electronics"),
    ("laptop", "laptop-sleeve-deal.png", "Laptop bundle deal", "", "electronics"),
    ("headphones", "p-77120.jpg", "Product 77120", "Black and red", "electronics"),
    ("chair", "oak-dining-chair.png", "Oak dining chair", "Wooden chair, side view", "home"),
    ("lamp", "bedside-lamp.jpg", "Bedside lamp with linen shade", "", "home"),
    ("mug", "stoneware-mug.png", "Stoneware mug, 350 ml", "Mug with handle", "home"),
    ("table", "side-table.jpg", "Walnut side table", "", "home"),
    ("lamp", "p-61001.png", "Product 61001", "", "home"),
    ("chair", "IMG_0618.jpg", "Kitchen seating", "", "home"),
    ("noise", "IMG_0700.jpg", "Item 700", "", "unknown"),
    ("noise", "p-00000.png", "Lot of assorted items", "", "unknown"),
    ("noise", "scan-0001.jpg", "", "", "unknown"),
    ("mug", "enamel-mug.jpg", "Enamel camping mug", "", "home"),
]

DROP_1109: list[tuple[str, str, str, str, str]] = [
    ("tshirt", "oversized-tee.jpg", "Oversized T-shirt", "", "apparel"),
    ("hoodie", "fleece-hoodie.png", "Fleece hoodie", "Hoodie with pocket", "apparel"),
    ("trousers", "cargo-trousers.jpg", "Cargo trousers", "", "apparel"),
    ("dress", "IMG_1044.png", "Evening wear", "", "apparel"),
    ("tshirt", "p-90210.gif", "Product 90210", "", "apparel"),
    ("phone", "budget-phone.jpg", "Budget smartphone 64 GB", "", "electronics"),
    ("laptop", "gaming-laptop.png", "Gaming laptop 15.6 inch", "", "electronics"),
    ("headphones", "wireless-headphones.webp", "Wireless headphones", "", "electronics"),
    ("monitor", "IMG_1102.jpg", "Display, 24 inch", "", "electronics"),
    ("phone", "p-41552.png", "Product 41552", "", "electronics"),
    ("chair", "oak-bar-stool.png", "", "", "home"),
    ("lamp", "floor-lamp.jpg", "Floor lamp", "Tall lamp", "home"),
    ("mug", "IMG_1180.png", "Coffee cup", "", "home"),
    ("table", "coffee-table.jpg", "Coffee table, oak", "", "home"),
    ("chair", "p-50012.jpg", "Product 50012", "", "home"),
    ("lamp", "desk-lamp.png", "Desk lamp", "", "home"),
    ("noise", "IMG_1300.jpg", "Item 1300", "", "unknown"),
    ("noise", "p-00001.png", "", "", "unknown"),
    ("monitor", "ultrawide-34.jpg", "34-inch ultrawide monitor", "", "electronics"),
    ("dress", "maxi-dress.jpg", "Maxi dress", "", "apparel"),
]
NOT_IN_MANIFEST_1109 = "oak-bar-stool.png"


def _clear(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _manifest_line(drop: str, n: int, file: str, title: str, alt: str) -> dict[str, str]:
    line = {"id": f"img-{drop}-{n:03d}", "file": file, "title": title}
    if alt:
        line["alt"] = alt
    line["url"] = f"{URL}{drop}-{n:03d}"
    return line


def _write_manifest(folder: Path, lines: list[dict[str, str]]) -> None:
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    (folder / "manifest.jsonl").write_text(text, encoding="utf-8")


def _write_images(
    folder: Path, drop: str, seed: int, items: list[tuple[str, str, str, str, str]]
) -> list[dict[str, str]]:
    lines = []
    for n, (kind, file, title, alt, _label) in enumerate(items, start=1):
        _save(draw(kind, seed + n), folder / file)
        lines.append(_manifest_line(drop, n, file, title, alt))
    return lines


def make_drop_1102(root: Path) -> None:
    folder = root / "2026-11-02"
    _clear(folder)
    lines = _write_images(folder, "1102", 1102_000, DROP_1102)
    n = len(lines)

    whole = folder / "bedside-lamp.jpg"
    data = whole.read_bytes()
    (folder / "IMG_0801.jpg").write_bytes(data[: len(data) * 3 // 5])
    (folder / "empty-listing.jpg").write_bytes(b"")
    page = b"<html><head><title>403 Forbidden</title></head><body>Access denied</body></html>\n"
    (folder / "p-40300.jpg").write_bytes(page)
    shutil.copyfile(folder / "oak-dining-chair.png", folder / "oak-dining-chair-copy.png")
    kind, _, _, _, _ = DROP_1102[0]
    _save(draw(kind, 1102_000 + 1, shift=1), folder / "navy-cotton-tshirt-2.jpg", quality=70)
    extra = [
        ("IMG_0801.jpg", "Bedside lamp (second photo)", ""),
        ("empty-listing.jpg", "Listing without a photo", ""),
        ("p-40300.jpg", "Product 40300", ""),
        ("oak-dining-chair-copy.png", "Oak dining chair", "Wooden chair, side view"),
        ("navy-cotton-tshirt-2.jpg", "Classic cotton T-shirt (navy)", "Crew-neck tee"),
        ("IMG_0999.jpg", "Photo that never arrived", ""),
    ]
    for i, (file, title, alt) in enumerate(extra, start=n + 1):
        lines.append(_manifest_line("1102", i, file, title, alt))
    _write_manifest(folder, lines)
    (folder / "_SUCCESS").write_bytes(b"")


def make_drop_1109(root: Path) -> None:
    folder = root / "2026-11-09"
    _clear(folder)
    lines = _write_images(folder, "1109", 1109_000, DROP_1109)
    lines = [line for line in lines if line["file"] != NOT_IN_MANIFEST_1109]
    first = root / "2026-11-02"
    shutil.copyfile(first / "stoneware-mug.png", folder / "mug-350ml.png")
    laptop_n = next(i for i, row in enumerate(DROP_1102, start=1) if row[1] == "ultrabook-14.jpg")
    _save(draw("laptop", 1102_000 + laptop_n), folder / "ultrabook-14-inch.png")
    n = len(DROP_1109)
    lines.append(_manifest_line("1109", n + 1, "mug-350ml.png", "Stoneware mug 350ml", ""))
    lines.append(_manifest_line("1109", n + 2, "ultrabook-14-inch.png", "Ultrabook 14 inch", ""))
    _write_manifest(folder, lines)
    (folder / "_SUCCESS").write_bytes(b"")


def expected_labels() -> dict[str, str]:
    """The label each demo image was drawn as, by record id (for benchmarks)."""
    out = {}
    for drop, items in (("1102", DROP_1102), ("1109", DROP_1109)):
        for n, (_, file, _, _, label) in enumerate(items, start=1):
            key = file if file == NOT_IN_MANIFEST_1109 else f"img-{drop}-{n:03d}"
            out[key] = label
    return out


def main() -> None:
    make_drop_1102(DROPS_DIR)
    make_drop_1109(DROPS_DIR)
    total = sum(p.stat().st_size for p in DROPS_DIR.rglob("*") if p.is_file())
    print(f"wrote {DROPS_DIR} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
