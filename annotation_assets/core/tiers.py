"""The learned tiers of the labeling cascade, behind one interface; no DuckDB, no Dagster here.

After the rules, each tier of a task's cascade (stages/model.py routes through them in order)
scores only the records every earlier stage left below the auto-accept threshold. A tier
turns a batch of records into per-record label probabilities, and keeps its version and what
scoring cost: records scored, wall seconds, texts newly embedded, model tokens. Adding a tier
(a language model after CLIP, say) means adding a `Tier` subclass and putting it in the
cascade, not a branch in the stage.

Each tier fills one of the two vote slots of model_labels: MODEL (the small model's
model_label/model_confidence/model_probs/model_version, routed as source `model`, or
`model_text` for images) or HEAVY (heavy_label/heavy_confidence/heavy_version). Tiers sharing
a slot form one routing stage, a later tier overwriting the votes of the records it rescored.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd

from annotation_assets.core.fast_model import NGRAM, FastModel

Progress = Callable[[str, int, int | None], None]

MODEL = "model"
HEAVY = "heavy"


class Encoder(Protocol):
    """A sentence encoder: texts to (n, dim) float32 vectors."""

    name: str
    dim: int

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray: ...


class HeavyScorer(Protocol):
    """A slower, stronger model consulted only for records the small model left unsure."""

    version: str

    def predict_proba(self, texts: Sequence[str], label_names: Sequence[str]) -> np.ndarray: ...


@dataclass
class Batch:
    """The records one tier scores, in drop order. `keys` holds their dedup keys, indexed by
    the records' positions in the drop; their texts and item files are read only when a tier
    asks (an image tier needs no text, a text tier no file)."""

    keys: pd.Series
    read_texts: Callable[[], pd.Series]
    read_files: Callable[[], Sequence[str | None]]

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def texts(self) -> pd.Series:
        """The records' normalized texts, indexed like `keys`."""
        return self.read_texts()

    @cached_property
    def files(self) -> Sequence[str | None]:
        """The path of each record's item file (images); None where it has none."""
        return self.read_files()


@dataclass
class TierCost:
    """What a tier's scoring cost so far."""

    records: int = 0  # records scored
    seconds: float = 0.0  # wall time of scoring
    encoded: int = 0  # texts newly embedded (embedding-cache misses), for tiers that embed
    tokens: int = 0  # model tokens read and written, for tiers that prompt a language model


class Tier(ABC):
    """One learned tier of the cascade.

    `name` names the tier in the stage's figures (records_by_tier's `<name>_scored`, the
    timing of `<name>`); `slot` is the vote it fills (MODEL or HEAVY); a `screens` tier sits
    in front of a costlier one of its slot, so what it settles is counted apart
    (`<name>_settled`). A tier whose confidences are not trusted (`may_accept=False`) still
    scores, but settles nothing and accepts nothing."""

    name: ClassVar[str]
    slot: ClassVar[str] = MODEL
    screens: ClassVar[bool] = False

    def __init__(self, version: str, *, may_accept: bool = True) -> None:
        self.version = version
        self.may_accept = may_accept
        self.cost = TierCost()

    def score(self, batch: Batch, progress: Progress | None = None) -> np.ndarray:
        """The (len(batch), n_labels) label probabilities of the batch's records, a row of
        NaN for each record the tier could not score; adds the records scored and the seconds
        taken to `cost`."""
        start = time.perf_counter()
        probs = self.predict_proba(batch, progress)
        self.cost.seconds += time.perf_counter() - start
        self.cost.records += int(np.count_nonzero(scored_rows(probs)))
        return probs

    @abstractmethod
    def predict_proba(self, batch: Batch, progress: Progress | None) -> np.ndarray:
        """The probabilities `score` returns, as the model gives them (its own dtype: the
        stage rounds what it stores from them)."""


def scored_rows(probs: np.ndarray) -> np.ndarray:
    """Which rows of a tier's probabilities hold a score (not all NaN)."""
    if len(probs) == 0 or probs.shape[1] == 0:
        return np.zeros(len(probs), dtype=bool)
    return ~np.isnan(probs).all(axis=1)


class NgramTier(Tier):
    """Hashed word and character n-grams under a calibrated linear model: thousands of texts
    a second, in front of the encoder, which then sees only what this tier left unsure."""

    name = NGRAM
    screens = True

    def __init__(self, model: FastModel, *, may_accept: bool = True) -> None:
        super().__init__(model.version, may_accept=may_accept)
        self.model = model

    def predict_proba(self, batch: Batch, progress: Progress | None) -> np.ndarray:
        if progress:
            progress("n-gram tier", 0, len(batch))
        probs = self.model.predict_proba(batch.texts)
        if progress:
            progress("n-gram tier", len(batch), len(batch))
        return probs


class HeavyTier(Tier):
    """A heavy scorer (today zero-shot CLIP over image files) asked only about the records the
    tiers before it left unsure. It reads the item files of image records, where a record
    without one (a table edited by hand) gets no vote instead of stopping the stage, and the
    texts of text records."""

    name = "heavy"
    slot = HEAVY

    def __init__(self, scorer: HeavyScorer, labels: Sequence[str], *, images: bool) -> None:
        super().__init__(scorer.version)
        self.scorer = scorer
        self.labels = list(labels)
        self.images = images

    def predict_proba(self, batch: Batch, progress: Progress | None) -> np.ndarray:
        probs = np.full((len(batch), len(self.labels)), np.nan)
        if self.images:
            named = np.array([f is not None for f in batch.files], dtype=bool)
            items = [f for f in batch.files if f is not None]
        else:
            named = np.ones(len(batch), dtype=bool)
            items = batch.texts.tolist()
        if items:
            probs[named] = self.scorer.predict_proba(items, self.labels)
        return probs
