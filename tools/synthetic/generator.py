"""Seeded synthetic scraped reviews: records with id, text, rating, product, url, scraped_at
and a gold label, in one list or in chunks of bounded memory."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tools.synthetic.catalog import CATEGORIES, DOMAINS, PRODUCTS
from tools.synthetic.templates import RATINGS
from tools.synthetic.text import near_duplicate, noisy, render

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL_WEIGHTS: dict[str, float] = {"negative": 0.31, "neutral": 0.29, "positive": 0.40}
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "negative": ("refund", "broken", "waste of money"),
    "positive": ("love", "excellent", "perfect"),
}
FIELDS: tuple[str, ...] = ("id", "text", "rating", "product", "url", "scraped_at", "gold_label")
DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)


def _rating(rng: random.Random, label: str) -> int | None:
    if rng.random() < 0.12:
        return None
    if rng.random() < 0.03:
        return rng.randint(1, 5)
    return rng.choice(RATINGS[label])


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _url(rng: random.Random, product_index: int, cat_key: str, name: str) -> str:
    domain = DOMAINS[product_index % len(DOMAINS)]
    sku = f"B0{(product_index * 7919) % 10**6:06d}"
    page = rng.randint(1, 40)
    return f"https://{domain}/{cat_key.replace('_', '-')}/{_slug(name)}-{sku}/reviews?page={page}"


def _fresh(rng: random.Random) -> dict[str, Any]:
    label = rng.choices(LABELS, weights=[LABEL_WEIGHTS[lb] for lb in LABELS])[0]
    product_index = rng.randrange(len(PRODUCTS))
    cat_key, name = PRODUCTS[product_index]
    cat = CATEGORIES[cat_key]
    return {
        "text": render(rng, cat, label),
        "rating": _rating(rng, label),
        "product": name,
        "url": _url(rng, product_index, cat_key, name),
        "gold_label": label,
    }


def _as_datetime(value: datetime | str | None) -> datetime:
    if value is None:
        return DEFAULT_START
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _generate(
    rng: random.Random,
    n: int,
    *,
    offset: int,
    total: int,
    html_rate: float,
    duplicate_rate: float,
    near_duplicate_rate: float,
    id_prefix: str,
    start: datetime,
    span_days: float,
) -> list[dict[str, Any]]:
    width = max(7, len(str(max(total - 1, 0))))
    span = timedelta(days=span_days)
    out: list[dict[str, Any]] = []
    for i in range(n):
        r = rng.random()
        if out and r < duplicate_rate:
            rec = dict(rng.choice(out))
        elif out and r < duplicate_rate + near_duplicate_rate:
            rec = dict(rng.choice(out))
            rec["text"] = near_duplicate(rng, rec["text"])
        else:
            rec = _fresh(rng)
            if rng.random() < html_rate:
                rec["text"] = noisy(rng, rec["text"])
        g = offset + i
        when = start + span * ((g + rng.random()) / max(total, 1))
        out.append(
            {
                "id": f"{id_prefix}{g:0{width}d}",
                "text": rec["text"],
                "rating": rec["rating"],
                "product": rec["product"],
                "url": rec["url"],
                "scraped_at": when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                "gold_label": rec["gold_label"],
            }
        )
    return out


def generate_reviews(
    n: int,
    *,
    seed: int = 0,
    html_rate: float = 0.25,
    duplicate_rate: float = 0.04,
    near_duplicate_rate: float = 0.03,
    id_prefix: str = "r",
    start: datetime | str | None = None,
    span_days: float = 7.0,
) -> list[dict[str, Any]]:
    """`n` seeded synthetic scraped reviews with a `gold_label` (negative/neutral/positive).

    `html_rate` is the share with scraping noise; duplicates re-use an earlier record's text under
    a new id (exact, or one word/punctuation changed). `scraped_at` spans `span_days` from `start`.
    """
    return _generate(
        random.Random(seed),
        n,
        offset=0,
        total=n,
        html_rate=html_rate,
        duplicate_rate=duplicate_rate,
        near_duplicate_rate=near_duplicate_rate,
        id_prefix=id_prefix,
        start=_as_datetime(start),
        span_days=span_days,
    )


def iter_reviews(
    n: int, *, seed: int = 0, chunk_size: int = 10_000, **kw: Any
) -> Iterator[list[dict[str, Any]]]:
    """`n` reviews as lists of at most `chunk_size`, in bounded memory.

    Each chunk has its own RNG derived from `seed`, so duplicates refer within a chunk; ids and
    timestamps run on across chunks. Keywords as `generate_reviews`.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    opts: dict[str, Any] = {
        "html_rate": 0.25,
        "duplicate_rate": 0.04,
        "near_duplicate_rate": 0.03,
        "id_prefix": "r",
        "span_days": 7.0,
    }
    unknown = set(kw) - set(opts) - {"start"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    opts.update(kw)
    opts["start"] = _as_datetime(kw.get("start"))
    for k, offset in enumerate(range(0, n, chunk_size)):
        rng = random.Random(seed if k == 0 else f"{seed}/{k}")
        yield _generate(rng, min(chunk_size, n - offset), offset=offset, total=n, **opts)
