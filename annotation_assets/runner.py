"""Running a task's pipeline for a drop on a home's Dagster instance (used by the CLI)."""

import fcntl
import os
import shutil
import socket
import sqlite3
import sys
import warnings
from contextlib import closing
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from annotation_assets.core.llm import public_endpoint
from annotation_assets.core.spec import (
    SpecProblem,
    TaskSpec,
    check_drop_id,
    load_task_specs_isolated,
)
from annotation_assets.core.staging import staging_folder
from annotation_assets.home import Home
from annotation_assets.warehouse.counts import drop_counts

if TYPE_CHECKING:
    from resources import Warehouse


class UsageError(Exception):
    """Bad input from the user: reported as one line, non-zero exit."""


HOST_TAG, PID_TAG = "annotate/host", "annotate/pid"
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class Runner:
    def __init__(self, home: Home, tasks_dir: Path, *, verbose: bool = False) -> None:
        self.home = home
        self.tasks_dir = tasks_dir
        self.verbose = verbose
        self._announced: set[str] = set()
        self._warned = False

    @cached_property
    def _loaded(self) -> tuple[dict[str, TaskSpec], list[SpecProblem]]:
        return load_task_specs_isolated(self.tasks_dir)

    @property
    def specs(self) -> dict[str, TaskSpec]:
        """The valid task specs by name (a broken file takes out only its own task)."""
        return self._loaded[0]

    @property
    def spec_problems(self) -> list[SpecProblem]:
        return self._loaded[1]

    def spec(self, task: str) -> TaskSpec:
        if task not in self.specs:
            for problem in self.spec_problems:
                if problem.name == task or problem.path.stem == task:
                    raise UsageError(problem.message)
            known = ", ".join(sorted(self.specs)) or "none"
            raise UsageError(f"unknown task {task!r} in {self.tasks_dir} (known: {known})")
        return self.specs[task]

    def warn_spec_problems(self) -> None:
        """One stderr line per broken task file (the other tasks go on)."""
        if self._warned:
            return
        self._warned = True
        for problem in self.spec_problems:
            print(f"annotate: {problem.message} (this task is skipped)", file=sys.stderr)

    @cached_property
    def definitions(self) -> dg.Definitions:
        from annotation_assets.project import build_definitions

        self.warn_spec_problems()  # once, as one line each: not again as Python warnings
        warnings.filterwarnings("ignore", message=r".*\(this task is skipped\)$")
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        return build_definitions(
            self.home,
            self.tasks_dir,
            encoder_path=os.environ.get("ANNOTATION_ENCODER", ""),
            clip_path=os.environ.get("ANNOTATION_CLIP", ""),
        )

    @cached_property
    def instance(self) -> dg.DagsterInstance:
        """The home's Dagster instance. Its SQLite storage is created (migrated) under a file
        lock, so several `annotate` processes starting at once on a new home do not race."""
        self.home.create()
        os.environ["DAGSTER_HOME"] = str(self.home.dagster)
        warnings.filterwarnings("ignore", module="dagster")
        with open(self.home.dagster / ".instance.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                instance = dg.DagsterInstance.get()
                if drop_interrupted_event_index(instance):
                    instance.dispose()
                    instance = dg.DagsterInstance.get()  # creates the index again
                fail_abandoned_runs(instance)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return instance

    def stage_drop(self, task: str, source: Path) -> str:
        """Copies a local drop folder into the home (atomically replacing an earlier copy) and
        returns its drop id."""
        self.spec(task)
        if not source.exists():
            raise UsageError(f"drop folder {source} does not exist")
        if not source.is_dir():
            raise UsageError(f"drop {source} is not a folder")
        source = source.resolve()
        drop_id = source.name
        try:
            check_drop_id(drop_id)
        except ValueError as err:
            raise UsageError(str(err)) from None
        target = self.home.drop_dir(task, drop_id)
        if target.exists() and target.resolve() == source:
            return drop_id
        with staging_folder(target.parent, drop_id) as incoming:
            shutil.copytree(source, incoming, symlinks=True, dirs_exist_ok=True)
        return drop_id

    def stage_s3_drop(self, task: str, url: str) -> str:
        """Downloads an S3 drop `s3://bucket/prefix/<drop_id>/` into the home (atomically
        replacing an earlier copy) and returns its drop id. Objects whose keys would escape
        the drop folder are not written; they are reported here and quarantined."""
        from annotation_assets.core.s3 import S3Error, client_from_env, parse_s3_url
        from annotation_assets.core.staging import s3_drop_id, stage_s3_drop

        self.spec(task)
        try:
            parsed = parse_s3_url(url)
            s3_drop_id(parsed)
            staged = stage_s3_drop(client_from_env(), parsed, self.home.drops / task)
        except (S3Error, ValueError) as err:
            raise UsageError(str(err)) from None
        for key, reason in staged.refused:
            print(
                f"annotate: {parsed}: refused object {key!r} ({reason}); quarantined as "
                "outside_drop",
                file=sys.stderr,
            )
        return staged.drop_id

    def run_drop(self, task: str, drop_id: str, *, report: bool = True) -> dict[str, Any]:
        """Registers the drop as a partition, materializes every asset of the task for it
        (and, unless told not to, the task's quality report) and returns the drop's summary."""
        spec = self.spec(task)
        partitions = f"{task}_drops"
        if not self.instance.has_dynamic_partition(partitions, drop_id):
            self.instance.add_dynamic_partitions(partitions, [drop_id])
        self.announce_heavy_model(task)
        self._execute(f"{task}_pipeline", drop_id)
        if report:
            self.refresh_report(task)
        return self.summary(spec.name, drop_id)

    def announce_heavy_model(self, task: str) -> None:
        """Says once per process what the heavy tier is: for image tasks whether CLIP will run
        or images are labeled from their metadata text alone (source=model_text); for text
        tasks with `heavy:` the model and its endpoint (never the key)."""
        spec = self.spec(task)
        if task in self._announced or not (spec.is_image or spec.heavy is not None):
            return
        self._announced.add(task)
        if not spec.is_image:
            assert spec.heavy is not None
            where = public_endpoint(spec.heavy.base_url or os.environ.get("OPENAI_BASE_URL"))
            what = (
                f"{spec.heavy.model} at {where}"
                if spec.heavy.kind == "llm"
                else f"the local model in {spec.heavy.path}"
            )
            print(f"annotate: {task}: heavy model {what}", file=sys.stderr)
            return
        from resources import LabelModels

        models = LabelModels(
            models_dir=str(self.home.models), clip_path=os.environ.get("ANNOTATION_CLIP", "")
        )
        scorer, status = models.clip_for(spec)
        if scorer is None:
            print(
                f"annotate: {task}: {status}; labeling images from their metadata text only "
                "(source=model_text)",
                file=sys.stderr,
            )

    def refresh_report(self, task: str) -> None:
        self._execute(f"{task}_quality_report")

    def _execute(self, job_name: str, partition_key: str | None = None) -> None:
        job = self.definitions.resolve_job_def(job_name)
        result = job.execute_in_process(
            partition_key=partition_key,
            instance=self.instance,
            raise_on_error=False,
            run_config={} if self.verbose else QUIET_LOGS,
            tags={
                "annotate/cli": job_name,
                HOST_TAG: socket.gethostname(),
                PID_TAG: str(os.getpid()),
            },
        )
        if not result.success:
            where = f" for drop {partition_key}" if partition_key else ""
            raise UsageError(f"{job_name}{where} failed: {_failure(result)}")

    def apply_reviews(self, task: str) -> list[str]:
        """Materializes human_labels (importing every file in reviews/<task>/), then retrains
        and re-scores every drop. Returns the drops re-scored."""
        self._execute(f"{task}_import_reviews")
        drops = self.instance.get_dynamic_partitions(f"{task}_drops")
        for drop_id in drops:
            self._execute(f"{task}_rescore", drop_id)
        self.refresh_report(task)
        return list(drops)

    @cached_property
    def warehouse(self) -> "Warehouse":
        from resources import Warehouse

        try:
            return Warehouse.for_home(self.home)
        except ValueError as err:
            raise UsageError(str(err)) from None

    def summary(self, task: str, drop_id: str) -> dict[str, Any]:
        with self.warehouse.connect() as conn:
            return drop_counts(conn, task, drop_id)


def drop_interrupted_event_index(instance: dg.DagsterInstance) -> bool:
    """Deletes the SQLite event-log index of a local instance whose creation was interrupted
    (a process killed while Dagster created its tables); returns whether it did.

    Dagster creates that index, and reindexes the runs' own event files into it, only when
    the file does not exist: once a kill has left it with some of its tables (without
    `dynamic_partitions`, say), every later process fails. An index missing tables cannot
    have held what lives only there (partitions, which need their table), and what it
    indexes is rebuilt from the per-run files when it is created again."""
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata

    storage = instance.event_log_storage
    if not isinstance(storage, SqliteEventLogStorage):
        return False
    index = Path(storage.path_for_shard("index"))
    if not index.exists():
        return False
    with closing(sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True)) as db:
        present = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    if present >= set(SqlEventLogStorageMetadata.tables):
        return False
    for suffix in ("", "-wal", "-shm", "-journal"):
        index.with_name(index.name + suffix).unlink(missing_ok=True)
    return True


def fail_abandoned_runs(instance: dg.DagsterInstance) -> int:
    """Marks as failed the unfinished runs of `annotate` processes of this host that are gone
    (killed mid-run), so the UI does not show them running forever. Returns how many."""
    unfinished = [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    runs = instance.get_runs(
        dg.RunsFilter(statuses=unfinished, tags={HOST_TAG: socket.gethostname()})
    )
    failed = 0
    for run in runs:
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        instance.report_run_failed(
            run, message=f"annotate process {pid} ended before this run finished (killed?)"
        )
        failed += 1
    return failed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped) holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            message = error.message.strip().splitlines()[0] if error else "unknown error"
            return f"{event.step_key}: {message}"
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            evaluation = getattr(data, "evaluation", data)
            if evaluation is not None and not getattr(evaluation, "passed", True):
                key = getattr(evaluation, "asset_check_key", None)
                return f"blocking check {key.name if key else '?'} failed"
    return "see the run in the Dagster UI"
