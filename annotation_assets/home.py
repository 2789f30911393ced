"""Where a deployment keeps its state (the home) and its task specs."""

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = "annotation_home"


@dataclass(frozen=True)
class Home:
    """One folder holding the warehouse, drops, reviews, exports, models and the Dagster
    instance (DAGSTER_HOME) of a deployment."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def drops(self) -> Path:
        return self.root / "drops"

    @property
    def reviews(self) -> Path:
        return self.root / "reviews"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def dagster(self) -> Path:
        return self.root / "dagster"

    def drop_dir(self, task: str, drop_id: str) -> Path:
        return self.drops / task / drop_id

    def create(self) -> "Home":
        for folder in (self.drops, self.reviews, self.exports, self.models, self.dagster):
            folder.mkdir(parents=True, exist_ok=True)
        (self.dagster / "dagster.yaml").touch(exist_ok=True)
        return self


def resolve_home(arg: str | os.PathLike[str] | None = None) -> Home:
    """`--home`, else $ANNOTATION_HOME, else ./annotation_home; always absolute."""
    raw = arg or os.environ.get("ANNOTATION_HOME") or DEFAULT_HOME
    return Home(Path(raw).expanduser().resolve())


def resolve_tasks_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """`--tasks`, else $ANNOTATION_TASKS, else the project's bundled tasks/ folder."""
    raw = arg or os.environ.get("ANNOTATION_TASKS")
    return Path(raw).expanduser().resolve() if raw else PROJECT_ROOT / "tasks"
