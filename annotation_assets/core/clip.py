"""Zero-shot image classification with a local CLIP model (transformers CLIPModel).

Each label becomes prompts: every template (``"a photo of {label}."``) is filled with the
label's text (its description when one is given, else its name with ``_`` as spaces). A
label's text embedding is the mean of its L2-normalized prompt embeddings, normalized again
(prompt ensembling, as in the CLIP paper). An image's probabilities are the softmax over the
labels of ``logit_scale * cosine(image, label)``.

Weights are only ever read from disk: a folder, or a model id already in the local Hugging
Face cache (``resolve_clip_path``); nothing is downloaded.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotation_assets.core.encoder import encoder_identity
from annotation_assets.core.spec import check_label_template

__all__ = ["DEFAULT_TEMPLATES", "ClipScorer", "prompt_digest", "resolve_clip_path", "tiny_clip"]

DEFAULT_TEMPLATES = ("a photo of {label}.",)


def _label_texts(label_prompts: Mapping[str, str] | Sequence[str]) -> list[str]:
    if isinstance(label_prompts, Mapping):
        return [
            str(text).strip() or str(name).replace("_", " ") for name, text in label_prompts.items()
        ]
    return [str(name).replace("_", " ") for name in label_prompts]


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    if isinstance(templates, str) or not templates:
        raise ValueError("templates must be a non-empty sequence of strings")
    return tuple(check_label_template(t) for t in templates)


def _rgb(path: Path) -> Any:
    """The first frame of an image as RGB, transparency composited onto white."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")


def _features(output: Any) -> Any:
    """Projected embeddings from get_*_features (a tensor, or an output with pooler_output)."""
    return getattr(output, "pooler_output", output)


class ClipScorer:
    """Zero-shot label probabilities for image files from a local CLIP folder."""

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 32,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
    ) -> None:
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no transformers model at {path} (config.json missing)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = path
        self.version = encoder_identity(path)
        self.batch_size = batch_size
        self.templates = _check_templates(templates)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # silences the torchvision-less image processor notice
        try:
            self._processor = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
            self._model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
        self._max_tokens = int(self._model.config.text_config.max_position_embeddings)
        self._prompt_cache: dict[tuple[str, ...], np.ndarray] = {}

    @property
    def logit_scale(self) -> float:
        return float(self._model.logit_scale.exp().item())

    def encode_labels(self, label_prompts: Mapping[str, str] | Sequence[str]) -> np.ndarray:
        """One normalized text embedding per label (mean over the templates), (k, dim)."""
        import torch

        texts = tuple(_label_texts(label_prompts))
        cached = self._prompt_cache.get(texts)
        if cached is not None:
            return cached
        prompts = [template.format(label=text) for text in texts for template in self.templates]
        tokens = self._processor.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=self._max_tokens,
            return_tensors="pt",
        )
        with torch.inference_mode():
            emb = _features(self._model.get_text_features(**tokens))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
            emb = emb.reshape(len(texts), len(self.templates), -1).mean(dim=1)
            out = torch.nn.functional.normalize(emb, dim=-1).numpy()
        self._prompt_cache[texts] = out
        return out

    def encode_images(
        self,
        image_paths: Sequence[Path],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalized image embeddings (n, dim) in input order, and a mask of the images that
        could be read (unreadable ones have a zero row)."""
        import torch

        dim = int(self._model.config.projection_dim)
        out = np.zeros((len(image_paths), dim), dtype=np.float32)
        ok = np.zeros(len(image_paths), dtype=bool)
        for start in range(0, len(image_paths), self.batch_size):
            batch_idx, images = [], []
            for i in range(start, min(start + self.batch_size, len(image_paths))):
                try:
                    images.append(_rgb(Path(image_paths[i])))
                except Exception:  # quarantined upstream; a file changed since gets no vote
                    continue
                batch_idx.append(i)
            if images:
                pixels = self._processor.image_processor(images=images, return_tensors="pt")
                with torch.inference_mode():
                    emb = _features(self._model.get_image_features(**pixels))
                    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                out[batch_idx] = emb.numpy()
                ok[batch_idx] = True
            if progress is not None:
                progress(min(start + self.batch_size, len(image_paths)), len(image_paths))
        return out, ok

    def predict_proba(
        self,
        image_paths: Sequence[Path],
        label_prompts: Mapping[str, str] | Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Label probabilities (n, k), rows summing to 1, labels in the order given.

        An image that cannot be read at scoring time (it should have been quarantined at
        ingestion; it may have changed since) gets a uniform row, i.e. no confident vote."""
        labels = self.encode_labels(label_prompts)
        k = labels.shape[0]
        images, ok = self.encode_images(image_paths, progress=progress)
        logits = self.logit_scale * (images.astype(np.float64) @ labels.T.astype(np.float64))
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        probs[~ok] = 1.0 / k
        return probs


def resolve_clip_path(spec_value: str | None, *, cache_dir: Path | None = None) -> Path | None:
    """The local folder of a CLIP model: `spec_value` itself when it is a folder with a
    config.json, else a Hugging Face model id looked up in the local cache only (`cache_dir`,
    default the standard HF cache; never downloaded). None when there is no value or nothing
    usable is on disk."""
    if not spec_value or not spec_value.strip():
        return None
    value = spec_value.strip()
    folder = Path(value).expanduser()
    if folder.is_dir():
        return folder if (folder / "config.json").is_file() else None
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(value, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # not in the cache, not a valid repo id, or no cache at all
        return None
    return snapshot if (snapshot / "config.json").is_file() else None


def tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """Saves a tiny random-weight CLIP (32-wide, one layer, 32 x 32 images, 8 px patches)
    with a byte-level tokenizer and a matching image processor into `folder`, loadable by
    ClipScorer. For tests and benchmarks only: its predictions carry no meaning."""
    import torch
    import transformers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in sorted(ByteLevel.alphabet()):
            vocab[char + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    # The PIL image processor needs no torchvision; older transformers only have the other.
    image_processor_class: Any = getattr(transformers, "CLIPImageProcessorPil", None)
    image_processor = (image_processor_class or transformers.CLIPImageProcessor)(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def prompt_digest(
    templates: Sequence[str], label_prompts: Mapping[str, str] | Sequence[str]
) -> str:
    """A short digest of the prompts a prediction used (templates x label texts)."""
    joined = "\x1f".join(templates) + "\x1e" + "\x1f".join(_label_texts(label_prompts))
    return hashlib.sha1(joined.encode()).hexdigest()[:10]
