"""Where a deployment keeps its state (the home) and its task specs."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from annotation_assets.core.files import write_atomically

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = "annotation_home"
TELEMETRY_OFF = "telemetry:\n  enabled: false\n"  # a new home's dagster/dagster.yaml
# DuckDB's own default is 80% of the machine's memory; a bounded buffer pool makes large
# drops spill sorts, joins and temp tables to `<warehouse>.tmp/` instead of growing the process
DEFAULT_MEMORY_LIMIT = "256MB"
_MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


class HomeConfigError(ValueError):
    """The home's annotation.yaml (or its environment overrides) is not valid."""


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
MIN_MEMORY_LIMIT = 64 * 2**20  # below this DuckDB cannot run the stages' queries


def valid_memory_limit(value: str) -> bool:
    """Whether `value` is a size DuckDB's memory_limit accepts (a number and a unit) and
    at least 64 MiB."""
    match = _MEMORY_LIMIT.fullmatch(value)
    if not match:
        return False
    number = float(value[: match.start(2)].strip())
    return number * _UNITS[match.group(2).lower()] >= MIN_MEMORY_LIMIT


@dataclass(frozen=True)
class WarehouseSettings:
    backend: str
    path: str
    memory_limit: str = DEFAULT_MEMORY_LIMIT


@dataclass(frozen=True)
class Home:
    """One folder holding the warehouse, drops, reviews, exports, models and the Dagster
    instance (DAGSTER_HOME) of a deployment."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def config_file(self) -> Path:
        return self.root / "annotation.yaml"

    def warehouse_settings(self) -> "WarehouseSettings":
        """The warehouse backend and location: $ANNOTATION_WAREHOUSE_BACKEND and
        $ANNOTATION_WAREHOUSE_PATH, else `warehouse: {backend, path}` in the home's
        annotation.yaml, else the embedded DuckDB file `warehouse.duckdb`. The memory DuckDB
        may hold before spilling to disk: $ANNOTATION_WAREHOUSE_MEMORY_LIMIT, else
        `warehouse: {memory_limit}`, else 256MB."""
        section: object = {}
        if self.config_file.is_file():
            try:
                loaded = yaml.safe_load(self.config_file.read_text(encoding="utf-8")) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as err:
                first = str(err).strip().splitlines()[0]
                raise HomeConfigError(f"{self.config_file}: not valid YAML ({first})") from None
            if not isinstance(loaded, dict):
                raise HomeConfigError(f"{self.config_file}: must be a YAML mapping")
            section = loaded.get("warehouse", {}) or {}
        if not isinstance(section, dict):
            raise HomeConfigError(
                f"{self.config_file}: warehouse: expected a mapping with backend, path"
                f" and memory_limit, got {type(section).__name__}"
            )
        unknown = sorted(str(k) for k in set(section) - {"backend", "path", "memory_limit"})
        if unknown:
            raise HomeConfigError(
                f"{self.config_file}: warehouse: unknown key {', '.join(unknown)}"
                " (known: backend, path, memory_limit)"
            )
        backend = os.environ.get("ANNOTATION_WAREHOUSE_BACKEND") or section.get("backend")
        backend = str(backend or "duckdb")
        if backend not in ("duckdb", "parquet"):
            raise HomeConfigError(f"warehouse backend must be duckdb or parquet, got {backend!r}")
        path = os.environ.get("ANNOTATION_WAREHOUSE_PATH") or section.get("path")
        if not path:
            path = str(self.warehouse if backend == "duckdb" else self.root / "warehouse")
        elif not str(path).startswith("s3://"):
            path = str((self.root / Path(str(path)).expanduser()).resolve())
        if backend == "duckdb" and str(path).startswith("s3://"):
            raise HomeConfigError("the duckdb warehouse backend needs a local file path")
        limit = os.environ.get("ANNOTATION_WAREHOUSE_MEMORY_LIMIT") or section.get("memory_limit")
        limit = str(limit or DEFAULT_MEMORY_LIMIT).strip()
        if not valid_memory_limit(limit):
            where = (
                "ANNOTATION_WAREHOUSE_MEMORY_LIMIT"
                if os.environ.get("ANNOTATION_WAREHOUSE_MEMORY_LIMIT")
                else f"{self.config_file}: warehouse.memory_limit"
            )
            raise HomeConfigError(
                f"{where} must be a size of at least 64MiB such as 512MB or 2GB, got {limit!r}"
            )
        return WarehouseSettings(backend=backend, path=str(path), memory_limit=limit)

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
        instance = self.dagster / "dagster.yaml"
        if not instance.exists():
            # An offline pipeline's own instance: no usage statistics, and no telemetry notice
            # on the first run's stderr. Edit the file to turn them back on.
            write_atomically(instance, TELEMETRY_OFF)  # a kill cannot leave it empty
        return self


def resolve_home(arg: str | os.PathLike[str] | None = None) -> Home:
    """`--home`, else $ANNOTATION_HOME, else ./annotation_home; always absolute."""
    raw = arg or os.environ.get("ANNOTATION_HOME") or DEFAULT_HOME
    return Home(Path(raw).expanduser().resolve())


def resolve_tasks_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """`--tasks`, else $ANNOTATION_TASKS, else the project's bundled tasks/ folder."""
    raw = arg or os.environ.get("ANNOTATION_TASKS")
    return Path(raw).expanduser().resolve() if raw else PROJECT_ROOT / "tasks"
