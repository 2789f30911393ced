"""What the quality report shows: its sections and plots, and the figures of one task."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from annotation_assets.warehouse.codes import SOURCES

AgreementSummary = Callable[[pd.DataFrame, tuple[list[str], list[str]]], dict[str, Any]]

SECTIONS: dict[str, str] = {
    "summary": "Summary per drop",
    "class_distribution": "Class distribution",
    "confidence": "Confidence by stage",
    "stage_share": "Stage share over drops",
    "drift": "Label drift over drops",
    "rules": "Rules",
    "agreement": "Agreement",
    "calibration": "Calibration",
    "threshold_what_if": "Threshold what-if",
}
PLOTS = (
    "class_distribution",
    "confidence",
    "stage_share",
    "drift",
    "rules",
    "agreement",
    "calibration",
    "threshold_what_if",
)
SHARE_PARTS = (*SOURCES, "pending")
NO_OVERLAP = "no overlapping votes yet"
NO_HUMANS = "no human decisions yet"


@dataclass
class ReportData:
    """Everything the quality report shows, for one task; drops in `seq` order."""

    task: str
    labels: list[str]
    auto_accept: float
    max_psi: float
    generated_at: datetime
    drops: pd.DataFrame
    class_counts: pd.DataFrame
    balanced_counts: pd.DataFrame
    balancing: str
    confidences: dict[str, np.ndarray]
    drift: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    votes: dict[str, int]
    agreement: dict[str, Any] | None
    n_decided: int
    calibration: list[dict[str, Any]]
    calibration_n: int
    calibration_ece: float | None
    model: dict[str, Any] | None
    what_if: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def final_rows(self) -> int:
        return int(self.drops["final"].sum()) if len(self.drops) else 0

    @property
    def review_rate(self) -> float | None:
        """(Human-decided + pending) over normalized records, over every drop."""
        records = int(self.drops["records"].sum()) if len(self.drops) else 0
        if not records:
            return None
        return float((self.drops["human"].sum() + self.drops["pending"].sum()) / records)

    @property
    def model_version(self) -> str | None:
        return None if self.model is None else str(self.model["version"])
