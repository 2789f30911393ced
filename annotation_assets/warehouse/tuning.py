"""The tuned encoder of a task: when to fine-tune, on what, and whether the result replaces the
encoder in force (champion and challenger on held-out human decisions).

Layout in the task's model store (`<home>/models/<task>/encoders/`):

    <version>/           a tuned encoder: transformers weights and tokenizer, finetune.json,
                         trained_keys.txt; written under a hidden name and renamed when complete
    CHAMPION             the version in force (absent: the base encoder); replaced atomically,
                         only after the comparison, so a fine-tune killed midway changes nothing
    comparisons.jsonl    every comparison, promoted or not: both sides' held-out metrics

The held-out decisions are the human decisions whose dedup key falls in the lowest
`model.finetune_holdout_share` of a stable hash: the same records in every round, so no
version (earlier champions included) was ever trained on them. Each contender's head is fitted
on the same training rows over its own encoder's vectors and calibrated by cross-fitting on the
held-out rows, so both sides are measured alike."""

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_assets.core.classifier import fit_head_logits
from annotation_assets.core.encoder import cpu_has_native_bf16, encoder_identity, resolve_precision
from annotation_assets.core.finetune import (
    FINETUNE_META,
    FinetuneSettings,
    challenger_wins,
    finetune_encoder,
    finetune_version,
    heldout_metrics,
    read_meta,
    stable_bucket,
    trained_keys,
    write_version,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import Encoder, Progress
from annotation_assets.warehouse.embeddings import embed_cached
from annotation_assets.warehouse.sql import Connect, first_row, now, q
from annotation_assets.warehouse.training import training_set

CHAMPION = "CHAMPION"
COMPARISONS = "comparisons.jsonl"
ATTEMPTS = "attempts.json"
LOCK = ".lock"
MAX_ATTEMPTS = 3  # a fine-tune killed this many times (out of memory?) is not tried again
COMPARISON_KEYS = frozenset({"version", "base", "promoted", "reason", "n_reviewed"})
STOP_SHARE = 10  # percent of the training rows kept for early stopping
MIN_HELDOUT = 20
MIN_STOP = 30  # smaller early-stopping folds are noise: then no early stopping


@dataclass
class TuneOutcome:
    """What the tuned_encoder asset did: `status` is `tuned` (a challenger was trained or
    reloaded and compared), `skipped` (not due, with `reason`) or `off`."""

    status: str
    reason: str
    champion: str | None
    version: str | None = None
    promoted: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, float] = field(default_factory=dict)
    incumbent: dict[str, float] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)


def encoders_dir(store_root: Path) -> Path:
    return store_root / "encoders"


def champion_version(store_root: Path, base: str) -> str | None:
    """The tuned encoder in force for a task whose base encoder has identity `base`
    (`base_identity`): None when none was promoted, its folder is gone, or it was tuned from
    another base encoder."""
    folder = encoders_dir(store_root)
    try:
        version = (folder / CHAMPION).read_text().strip()
    except OSError:
        return None
    if not version or not (folder / version / FINETUNE_META).exists():
        return None
    try:
        meta = read_meta(folder / version)
    except (OSError, ValueError):
        return None
    return version if meta.get("base") == base else None


def comparisons(store_root: Path) -> list[dict[str, Any]]:
    path = encoders_dir(store_root) / COMPARISONS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill mid-write
        if isinstance(row, dict) and row.keys() >= COMPARISON_KEYS:
            rows.append(row)
    return rows


def base_identity(base_path: Path) -> str:
    """The base encoder's identity, whatever precision it runs in on this machine: a champion
    tuned on a worker with bfloat16 instructions serves workers without them too."""
    return encoder_identity(base_path)


@contextmanager
def _store_lock(folder: Path) -> Iterator[None]:
    """Only one fine-tune of a task at a time (two imports close together): the second waits,
    then finds the first's comparison and is not due. An advisory lock on the store's folder,
    for the processes of one machine (and of machines sharing a file system with working
    POSIX locks)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def settings_of(spec: TaskSpec) -> FinetuneSettings:
    m = spec.model
    precision = resolve_precision(m.encoder_precision, native_bf16=cpu_has_native_bf16())
    return FinetuneSettings(
        epochs=m.finetune_epochs,
        learning_rate=m.finetune_learning_rate,
        batch_size=m.finetune_batch_size,
        max_length=min(m.max_length, m.finetune_max_length),
        seed=m.finetune_seed,
        max_seconds=m.finetune_max_seconds,
        bfloat16=precision == "bfloat16",
    )


def tune_encoder(
    connect: Connect,
    spec: TaskSpec,
    store_root: Path,
    *,
    base_path: Path,
    base: Encoder,
    load: Callable[[Path], Encoder],
    progress: Progress | None = None,
    forget_vectors: bool = True,
) -> TuneOutcome:
    """Fine-tunes the task's encoder when due, compares the result with the encoder in force
    on held-out human decisions, promotes it if it wins, records the comparison and prunes
    old versions. `base` is the base encoder (loaded from `base_path`), `load` opens a tuned
    folder as an Encoder."""
    base_id = base_identity(base_path)
    if not spec.model.finetune:
        return TuneOutcome("off", "model.finetune is false", champion_version(store_root, base_id))
    with _store_lock(encoders_dir(store_root)):
        return _tune_locked(
            connect,
            spec,
            store_root,
            base_path=base_path,
            base_id=base_id,
            base=base,
            load=load,
            progress=progress,
            forget_vectors=forget_vectors,
        )


def _tune_locked(
    connect: Connect,
    spec: TaskSpec,
    store_root: Path,
    *,
    base_path: Path,
    base_id: str,
    base: Encoder,
    load: Callable[[Path], Encoder],
    progress: Progress | None,
    forget_vectors: bool,
) -> TuneOutcome:
    m = spec.model
    folder = encoders_dir(store_root)
    champion = champion_version(store_root, base_id)  # read under the lock
    with connect() as conn:
        row = first_row(conn.execute(f"SELECT max(seq) FROM {q(spec.name, 'drops')}"))
        seq = int(row[0]) if row is not None and row[0] is not None else 0
        train = training_set(conn, spec, seq)
    human = train["origin"] == "human"
    n_human = int(human.sum())
    if n_human < m.finetune_min_reviewed:
        reason = f"{n_human} human decisions, fine-tuning starts at {m.finetune_min_reviewed}"
        return TuneOutcome("skipped", reason, champion)
    earlier = [c for c in comparisons(store_root) if c["base"] == base_id]
    if earlier:
        due = int(earlier[-1]["n_reviewed"] * (1 + m.finetune_regrow))
        if n_human < max(due, earlier[-1]["n_reviewed"] + 1):
            reason = (
                f"{n_human} human decisions; the last fine-tune had {earlier[-1]['n_reviewed']},"
                f" the next starts at {max(due, earlier[-1]['n_reviewed'] + 1)}"
            )
            return TuneOutcome("skipped", reason, champion)
    buckets = train["dedup_key"].map(stable_bucket)
    heldout = human & (buckets < round(m.finetune_holdout_share * 100))
    index = {label: i for i, label in enumerate(spec.label_names)}
    held = train[heldout]
    if champion:  # a larger holdout share since it was trained must not score it on its own
        held = held[~held["dedup_key"].isin(trained_keys(folder / champion))]
    if len(held) < MIN_HELDOUT or held["label"].nunique() < 2:
        reason = (
            f"only {len(held)} held-out decisions ({held['label'].nunique()} labels); the"
            f" comparison needs {MIN_HELDOUT} over at least two labels"
        )
        return TuneOutcome("skipped", reason, champion)
    rest = train[~heldout]
    stop = rest["dedup_key"].map(lambda k: stable_bucket(f"stop:{k}")) < STOP_SHARE
    if stop.sum() < MIN_STOP:  # too few to tell epochs apart: train on them, every epoch
        stop[:] = False
    fit_rows, stop_rows = rest[~stop], rest[stop]
    y_fit = fit_rows["label"].map(index).to_numpy(dtype=np.int64)
    w_fit = fit_rows["weight"].to_numpy(dtype=np.float64)
    settings = settings_of(spec)
    version = finetune_version(
        base_id,
        fit_rows["dedup_key"].tolist(),
        y_fit,
        w_fit,
        stop_rows["dedup_key"].tolist(),
        settings,
    )
    attempts = _attempts(folder)
    if attempts.get(version, 0) >= MAX_ATTEMPTS:
        reason = (
            f"fine-tuning {version} was interrupted {attempts[version]} times (out of memory?);"
            f" delete {folder / ATTEMPTS} to try again"
        )
        return TuneOutcome("skipped", reason, champion)
    meta = {
        "base": base_id,
        "base_path": str(base_path),
        "created_at": now().isoformat(),
        "n_reviewed": n_human,
        "settings": settings.__dict__,
        "by_origin": fit_rows["origin"].value_counts().to_dict(),
    }
    if not (folder / version / FINETUNE_META).exists():
        _write_attempts(folder, attempts | {version: attempts.get(version, 0) + 1})
    path = write_version(
        folder,
        version,
        lambda tmp: finetune_encoder(
            base_path,
            fit_rows["text"].tolist(),
            y_fit,
            w_fit,
            n_labels=len(index),
            stop_texts=stop_rows["text"].tolist(),
            stop_labels=stop_rows["label"].map(index).to_numpy(dtype=np.int64),
            settings=settings,
            out_dir=tmp,
            progress=progress,
        ),
        trained_keys=rest["dedup_key"].tolist(),
        meta=meta,
    )
    _write_attempts(folder, {k: v for k, v in _attempts(folder).items() if k != version})
    metrics = read_meta(path)["metrics"]
    threshold = spec.thresholds.auto_accept
    challenger_encoder = load(path)
    incumbent_encoder = load(folder / champion) if champion else base
    compare = {
        "challenger": _heldout(connect, spec, challenger_encoder, rest, held, threshold),
        "champion": _heldout(connect, spec, incumbent_encoder, rest, held, threshold),
    }
    promoted, why = challenger_wins(compare["challenger"], compare["champion"], threshold)
    if version == champion:
        promoted, why = False, "this version is already the champion"
    record = {
        "version": version,
        "base": base_id,
        "champion_before": champion or base_id,
        "promoted": promoted,
        "reason": why,
        "n_reviewed": n_human,
        "n_heldout": len(held),
        "compared_at": now().isoformat(),
        "challenger": compare["challenger"],
        "champion": compare["champion"],
        "train_seconds": metrics.get("train_seconds"),
    }
    previous = champion
    if promoted:  # first: a kill before the record leaves the winner in force, not unused
        _replace_text(folder / CHAMPION, version)
        champion = version
    _append_line(folder / COMPARISONS, record)
    _register(connect, spec.name, version, challenger_encoder.name, record, metrics, path)
    # the champion just replaced is kept: runs that read CHAMPION before the swap may use it
    keep = {v for v in (champion, previous) if v}
    pruned = prune(folder, keep=m.finetune_keep_versions, also=keep)
    if pruned and forget_vectors:
        _forget_vectors(connect, spec.name, pruned)
    return TuneOutcome(
        "tuned",
        why,
        champion,
        version=version,
        promoted=promoted,
        metrics=metrics,
        challenger=compare["challenger"],
        incumbent=compare["champion"],
        pruned=pruned,
    )


def _heldout(
    connect: Connect,
    spec: TaskSpec,
    encoder: Encoder,
    train: pd.DataFrame,
    held: pd.DataFrame,
    threshold: float,
) -> dict[str, float]:
    """One contender's figures on the held-out decisions: a head fitted on `train` over its
    encoder's vectors, calibrated by cross-fitting on the held-out rows."""
    index = {label: i for i, label in enumerate(spec.label_names)}
    both = pd.concat([train, held], ignore_index=True)
    x, _ = embed_cached(
        connect, spec.name, encoder, both["dedup_key"], both["text"], stage="embed to compare"
    )
    y = both["label"].map(index).to_numpy(dtype=np.int64)
    n = len(train)
    logits = fit_head_logits(
        x[:n], y[:n], train["weight"].to_numpy(dtype=np.float64), x[n:], n_labels=len(index)
    )
    return heldout_metrics(logits, y[n:], threshold)


def prune(folder: Path, *, keep: int, also: set[str]) -> list[str]:
    """Removes tuned versions other than `also` (the champion and the one it replaced) and
    the `keep` most recently compared (the policy in docs/model.md), and the hidden folders
    of fine-tunes that were killed (called under the store's lock, so none is running);
    returns the versions removed."""
    if not folder.exists():
        return []
    order = [row["version"] for row in comparisons(folder.parent)]
    wanted = set(list(dict.fromkeys(reversed(order)))[:keep]) | also
    removed = []
    for path in sorted(folder.iterdir()):
        if not path.is_dir():
            continue
        if path.name.startswith("."):
            if path.name.endswith(".tmp"):
                shutil.rmtree(path, ignore_errors=True)
        elif path.name not in wanted:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _forget_vectors(connect: Connect, task: str, versions: list[str]) -> None:
    """Drops the cached vectors of pruned encoders (their names start with the version)."""
    with connect() as conn:
        for version in versions:
            conn.execute(
                f"DELETE FROM {q(task, 'embeddings')} WHERE starts_with(encoder, ?)",
                [f"{version}@"],
            )


def _register(
    connect: Connect,
    task: str,
    version: str,
    encoder_name: str,
    record: dict[str, Any],
    metrics: dict[str, Any],
    path: Path,
) -> None:
    with connect() as conn:
        conn.execute(
            f"INSERT INTO {q(task, 'model_versions')} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
                version,
                "tuned_encoder",
                encoder_name,
                now(),
                int(metrics.get("train_rows", 0)),
                "{}",
                json.dumps({**metrics, "comparison": record}, default=str),
                str(path),
            ],
        )


def _attempts(folder: Path) -> dict[str, int]:
    """Fine-tunes started and not finished, by version (a kill leaves its count)."""
    try:
        data = json.loads((folder / ATTEMPTS).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int)}


def _write_attempts(folder: Path, attempts: dict[str, int]) -> None:
    _replace_text(folder / ATTEMPTS, json.dumps(attempts, sort_keys=True))


def _append_line(path: Path, row: dict[str, Any]) -> None:
    """Appends one JSON line, starting a new line first when a kill left the last one cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        cut = False
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            cut = fh.read(1) != b"\n"
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        fh.write((("\n" if cut else "") + line).encode())
        fh.flush()
        os.fsync(fh.fileno())


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
