"""Fine-tuning the sentence encoder on labeled texts, and the held-out comparison that decides
whether a tuned encoder replaces the one in force; no DuckDB, no Dagster here.

The encoder is trained with a classification head (mean pooling, L2 normalization, a scaled
linear layer: the geometry the frozen pipeline's logistic head sees) by AdamW with linear
warm-up and decay, seeded and in a fixed batch order, so the same inputs give the same
weights. After each epoch it is scored on an early-stopping fold; the best epoch is kept and
training stops after `patience` epochs without improvement or when the time budget runs out.
On a CPU with bfloat16 instructions the forward pass runs under bfloat16 autocast.

Only the encoder is kept: the cascade scores its vectors with the usual calibrated head
(core/classifier.py), so a tuned encoder is used exactly as the bundled one is. A version
folder holds the transformers model and tokenizer, `finetune.json` (settings, metrics) and
`trained_keys.txt` (the dedup keys it was trained on, so the head's calibration can use only
texts the encoder never saw)."""

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotation_assets.core.calibration import expected_calibration_error, fit_temperature, softmax

FINETUNE_META = "finetune.json"
TRAINED_KEYS = "trained_keys.txt"
LOGIT_SCALE = 20.0  # the head's logits are this times cosines of unit vectors
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "merges.txt",
    "vocab.json",
)

FinetuneProgress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class FinetuneSettings:
    """How an encoder is fine-tuned (the spec's `model.finetune_*` fields)."""

    epochs: int = 3
    learning_rate: float = 4e-5
    head_learning_rate: float = 2e-3
    batch_size: int = 16
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    patience: int = 1
    seed: int = 0
    max_seconds: float = 900.0
    bfloat16: bool = False


@dataclass
class FinetuneResult:
    """What a fine-tune produced: the folder of the tuned encoder and how training went."""

    path: Path
    version: str
    metrics: dict[str, Any] = field(default_factory=dict)


def finetune_version(
    base: str,
    keys: Sequence[str],
    labels: np.ndarray,
    weights: np.ndarray,
    stop_keys: Sequence[str],
    settings: FinetuneSettings,
) -> str:
    """The content address of a fine-tune: the base encoder's identity, the training rows
    (dedup key, label, weight), the early-stopping fold and every setting but the time
    budget. The same inputs give the same version (and, seeded, the same weights)."""
    h = hashlib.sha256()
    rows = sorted(zip(keys, labels.tolist(), np.round(weights, 6).tolist(), strict=True))
    recipe = {k: v for k, v in asdict(settings).items() if k != "max_seconds"}
    for part in (base, "finetune-v1", rows, sorted(stop_keys), recipe):
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return f"tuned-{h.hexdigest()[:12]}"


def stable_bucket(key: str, buckets: int = 100) -> int:
    """A record's bucket in [0, buckets) from its dedup key alone: the same record falls in the
    same fold in every run and every version, so held-out decisions stay held out."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % buckets


class _Classifier:
    """Encoder plus mean pooling, L2 normalization and a scaled linear head."""

    def __init__(self, path: Path, n_labels: int, seed: int) -> None:
        import torch
        from transformers import AutoModel

        torch.manual_seed(seed)
        self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
        hidden = int(self.encoder.config.hidden_size)
        generator = torch.Generator().manual_seed(seed)
        self.head = torch.nn.Linear(hidden, n_labels)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(n_labels, hidden, generator=generator) * 0.02)
            self.head.bias.zero_()

    def parameters(self) -> list[Any]:
        return [*self.encoder.parameters(), *self.head.parameters()]

    def train(self, mode: bool) -> None:
        self.encoder.train(mode)
        self.head.train(mode)

    def logits(self, batch: dict[str, Any]) -> Any:
        import torch

        hidden = self.encoder(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return LOGIT_SCALE * self.head(unit)

    def state(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}


def finetune_encoder(
    base: Path,
    texts: Sequence[str],
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_labels: int,
    stop_texts: Sequence[str],
    stop_labels: np.ndarray,
    settings: FinetuneSettings,
    out_dir: Path,
    progress: FinetuneProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Fine-tunes the encoder at `base` on `texts` (labels in [0, n_labels), per-row weights,
    balanced per class) and writes the best epoch's encoder and tokenizer to `out_dir`.
    Returns the training metrics: epochs run, best epoch, early-stopping accuracy and loss per
    epoch, train seconds and why training stopped (`epochs`, `early_stop`, `time_budget`)."""
    import torch

    if len(texts) == 0:
        raise ValueError("nothing to fine-tune on")
    start = clock()
    deadline = start + settings.max_seconds
    torch.manual_seed(settings.seed)
    tokenizer = _tokenizer(base)
    model = _Classifier(base, n_labels, settings.seed)
    balanced = _balanced(labels, weights, n_labels)
    steps_per_epoch = math.ceil(len(texts) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    warmup = max(1, int(total_steps * settings.warmup_share))
    groups: list[dict[str, Any]] = [
        {"params": list(model.encoder.parameters())},
        {"params": list(model.head.parameters()), "lr": settings.head_learning_rate},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(
            (step + 1) / warmup, max(0.0, (total_steps - step) / (total_steps - warmup + 1))
        ),
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bfloat16)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    stopped = "epochs"
    step = 0
    stage = "fine-tune encoder"
    if progress is not None:
        progress(stage, 0, total_steps * settings.batch_size)
    for epoch in range(settings.epochs):
        order = np.random.default_rng(settings.seed + epoch).permutation(len(texts))
        model.train(True)
        out_of_time = False
        for begin in range(0, len(order), settings.batch_size):
            idx = order[begin : begin + settings.batch_size]
            batch = _tokenize(tokenizer, [texts[i] for i in idx], settings.max_length)
            with autocast:
                logits = model.logits(batch)
            loss_each = torch.nn.functional.cross_entropy(
                logits.float(), torch.as_tensor(labels[idx], dtype=torch.long), reduction="none"
            )
            w = torch.as_tensor(balanced[idx], dtype=torch.float32)
            loss = (loss_each * w).sum() / w.sum().clamp(min=1e-9)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            if progress is not None:
                progress(stage, step * settings.batch_size, total_steps * settings.batch_size)
            if clock() > deadline:
                out_of_time = True
                break
        score = _evaluate(model, tokenizer, stop_texts, stop_labels, settings, autocast)
        score["epoch"] = epoch + 1
        score["complete"] = float(not out_of_time)
        history.append(score)
        # lower loss on the stopping fold (smoother than its accuracy); without one, every
        # epoch counts as an improvement
        key = -score["stop_loss"] if len(stop_texts) else epoch
        if best is None or key > best[0]:
            best = (key, epoch + 1, model.state())
        if out_of_time:
            stopped = "time_budget"
            break
        if epoch + 1 - best[1] >= settings.patience:
            if epoch + 1 < settings.epochs:  # epochs were left to run
                stopped = "early_stop"
            break
    assert best is not None
    model.encoder.load_state_dict(best[2])
    _write_encoder(model, tokenizer, base, out_dir)
    return {
        "epochs_run": len(history),
        "best_epoch": best[1],
        "stopped": stopped,
        "train_rows": len(texts),
        "stop_rows": len(stop_texts),
        "train_seconds": round(clock() - start, 3),
        "bfloat16": settings.bfloat16,
        "history": history,
    }


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, Any]:
    return dict(
        tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    )


def _evaluate(
    model: _Classifier,
    tokenizer: Any,
    texts: Sequence[str],
    labels: np.ndarray,
    settings: FinetuneSettings,
    autocast: Any,
) -> dict[str, float]:
    import torch

    if len(texts) == 0:
        return {"stop_accuracy": float("nan"), "stop_loss": float("nan")}
    model.train(False)
    chunks = []
    with torch.inference_mode(), autocast:
        for begin in range(0, len(texts), settings.batch_size):
            batch = _tokenize(
                tokenizer, list(texts[begin : begin + settings.batch_size]), settings.max_length
            )
            chunks.append(model.logits(batch).float().numpy())
    logits = np.concatenate(chunks)
    probs = softmax(logits)
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return {
        "stop_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "stop_loss": float(loss),
    }


def _write_encoder(model: _Classifier, tokenizer: Any, base: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    for name in TOKENIZER_FILES:  # what save_pretrained may not rewrite (a slow tokenizer's)
        if (base / name).exists() and not (out_dir / name).exists():
            shutil.copy(base / name, out_dir / name)


def _balanced(labels: np.ndarray, weights: np.ndarray, n_labels: int) -> np.ndarray:
    mass = np.bincount(labels, weights=weights, minlength=n_labels)
    scale = np.where(mass > 0, mass[mass > 0].mean() / np.maximum(mass, 1e-12), 1.0)
    return weights * scale[labels]


def write_version(
    store: Path,
    version: str,
    build: Callable[[Path], dict[str, Any]],
    *,
    trained_keys: Sequence[str],
    meta: dict[str, Any],
) -> Path:
    """Builds a version folder atomically: `build(tmp)` fills a hidden folder beside the
    final one, which is renamed into place only when complete (a kill leaves only the hidden
    folder, which the next call removes). Returns the final folder."""
    store.mkdir(parents=True, exist_ok=True)
    final = store / version
    if (final / FINETUNE_META).exists():
        return final
    for stale in store.glob(f".{version}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = store / f".{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        metrics = build(tmp)
        (tmp / TRAINED_KEYS).write_text("".join(f"{k}\n" for k in sorted(trained_keys)))
        payload = {**meta, "version": version, "metrics": metrics}
        (tmp / FINETUNE_META).write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
        if (final / FINETUNE_META).exists():  # another process completed it meanwhile
            return final
        if final.exists():  # a folder without its metadata: never completed
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / FINETUNE_META).read_text()))


def trained_keys(folder: Path) -> frozenset[str]:
    """The dedup keys a tuned encoder was trained on (empty for a folder without the file)."""
    path = folder / TRAINED_KEYS
    return frozenset(path.read_text().split("\n")) - {""} if path.exists() else frozenset()


# -- the held-out comparison ----------------------------------------------------------------


def crossfit_temperature(
    logits: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Probabilities for held-out rows, each row's temperature fitted on the other folds only
    (no row is calibrated on itself)."""
    n = len(labels)
    out = np.zeros_like(logits, dtype=np.float64)
    k = max(2, min(folds, n))
    fold = np.random.default_rng(seed).permutation(n) % k
    for f in range(k):
        rest = fold != f
        temperature = fit_temperature(logits[rest], labels[rest]) if rest.sum() >= 2 else 1.0
        out[fold == f] = softmax(logits[fold == f], temperature=temperature)
    return out


def heldout_metrics(
    raw_logits: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, float]:
    """Accuracy, ECE before and after (cross-fitted) calibration, and the share at or above
    `threshold` with its precision, on held-out rows."""
    raw = softmax(raw_logits)
    calibrated = crossfit_temperature(raw_logits, labels)
    conf = calibrated.max(axis=1)
    correct = calibrated.argmax(axis=1) == labels
    sure = conf >= threshold
    return {
        "accuracy": float(correct.mean()),
        "ece_raw": float(
            expected_calibration_error(
                raw.max(axis=1), (raw.argmax(axis=1) == labels).astype(float)
            )
        ),
        "ece_calibrated": float(expected_calibration_error(conf, correct.astype(float))),
        "coverage": float(sure.mean()),
        "precision": float(correct[sure].mean()) if sure.any() else float("nan"),
        "n": int(len(labels)),
    }


def challenger_wins(
    challenger: dict[str, float], champion: dict[str, float] | None, threshold: float
) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why: it must keep precision at or
    above the threshold on the share it would auto-accept, and accept more of the held-out
    decisions than the champion does at that precision (a champion below it counts as
    accepting none)."""
    precision = challenger["precision"]
    if not precision >= threshold:  # NaN (accepts nothing) fails too
        return False, f"challenger precision {precision:.3f} below the threshold {threshold}"
    if champion is None:
        return True, "no champion"
    champ_cov = champion["coverage"] if champion["precision"] >= threshold else 0.0
    if challenger["coverage"] > champ_cov:
        return True, f"coverage {challenger['coverage']:.3f} > champion's {champ_cov:.3f}"
    return False, f"coverage {challenger['coverage']:.3f} <= champion's {champ_cov:.3f}"
