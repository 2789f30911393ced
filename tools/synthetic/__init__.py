"""Deterministic synthetic scraped product reviews with sentiment labels, and a drop writer.

Development tooling (benches, tests, the demo-data script), not part of the product package.
"""

from tools.synthetic.drops import FORMATS, write_drop
from tools.synthetic.generator import (
    CUE_WORDS,
    DEFAULT_START,
    FIELDS,
    LABEL_WEIGHTS,
    LABELS,
    generate_reviews,
    iter_reviews,
)

__all__ = [
    "CUE_WORDS",
    "DEFAULT_START",
    "FIELDS",
    "FORMATS",
    "LABELS",
    "LABEL_WEIGHTS",
    "generate_reviews",
    "iter_reviews",
    "write_drop",
]
