import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import dagster as dg
import numpy as np

from annotation_assets.core.encoder import TextEncoder, bundled_encoder_path, load_encoder
from annotation_assets.core.llm import Labeler
from annotation_assets.core.model_store import ModelStore
from annotation_assets.core.spec import HeavySettings, TaskSpec
from annotation_assets.warehouse.tuning import base_identity, champion_version, encoders_dir
from resources.llm import ChatLabeler
from resources.local_llm import LocalLabeler


class ClipHeavyScorer:
    """Zero-shot CLIP over image files as the cascade's heavy stage (prompts from the label
    names and descriptions through the spec's templates)."""

    def __init__(self, scorer: object, spec: TaskSpec) -> None:
        self.scorer = scorer
        self.version: str = getattr(scorer, "version", "clip")
        self.prompts = {
            label: (f"{label.replace('_', ' ')}, {desc}" if desc else label.replace("_", " "))
            for label, desc in spec.labels.items()
        }

    def predict_proba(self, items: Sequence[str], label_names: Sequence[str]) -> np.ndarray:
        prompts = {label: self.prompts[label] for label in label_names}
        probs: np.ndarray = self.scorer.predict_proba([Path(i) for i in items], prompts)  # type: ignore[attr-defined]
        return probs


@lru_cache(maxsize=2)
def _load_clip(path: str, batch_size: int, templates: tuple[str, ...]) -> object:
    from annotation_assets.core.clip import ClipScorer

    return ClipScorer(Path(path), batch_size=batch_size, templates=templates)


@lru_cache(maxsize=2)
def _load_local(path: str, settings: HeavySettings, labels: tuple[str, ...]) -> LocalLabeler:
    return LocalLabeler(settings, list(labels), Path(path))


class LabelModels(dg.ConfigurableResource):
    """Where label models live: the sentence encoder (a local transformers folder; the bundled
    all-MiniLM-L6-v2 unless a task or this resource names another), CLIP weights for image
    tasks (a local folder or a model id in the local Hugging Face cache), and trained heads."""

    models_dir: str
    encoder_path: str = ""
    clip_path: str = ""

    def base_encoder_path(self, spec: TaskSpec) -> Path:
        """The folder of the task's base encoder (before any fine-tuning)."""
        path = spec.model.encoder or self.encoder_path or str(bundled_encoder_path())
        if not Path(path).is_dir():
            raise dg.Failure(
                f"encoder for task {spec.name!r} not found at {path} (model.encoder must be a "
                "local transformers folder; nothing is downloaded)"
            )
        return Path(path)

    def base_encoder_for(self, spec: TaskSpec) -> TextEncoder:
        return self.open_encoder(spec, self.base_encoder_path(spec))

    def open_encoder(self, spec: TaskSpec, path: Path) -> TextEncoder:
        m = spec.model
        return load_encoder(str(path), m.max_length, m.batch_size, m.encoder_precision)

    def encoder_for(self, spec: TaskSpec) -> TextEncoder:
        """The encoder in force: the task's promoted fine-tuned version (warehouse/tuning.py)
        when there is one for its base encoder and `model.finetune` is on, else the base."""
        base_path = self.base_encoder_path(spec)
        if spec.model.finetune:
            store = Path(self.models_dir) / spec.name
            version = champion_version(store, base_identity(base_path))
            if version is not None:
                try:
                    return self.open_encoder(spec, encoders_dir(store) / version)
                except (OSError, ValueError) as err:  # damaged weights or tokenizer files
                    print(
                        f"annotate: {spec.name}: tuned encoder {version} does not load"
                        f" ({err}); using the base encoder",
                        file=sys.stderr,
                    )
        return self.open_encoder(spec, base_path)

    def clip_for(self, spec: TaskSpec) -> tuple[ClipHeavyScorer | None, str]:
        """The CLIP heavy stage of an image task, or None with the reason it is unavailable
        (then the pipeline labels images from their metadata text alone, as `model_text`)."""
        from annotation_assets.core.clip import resolve_clip_path

        wanted = spec.model.clip or self.clip_path
        if not wanted:
            return None, "no CLIP weights configured (model.clip or ANNOTATION_CLIP)"
        path = resolve_clip_path(wanted)
        if path is None:
            return None, f"CLIP weights {wanted!r} not found locally (nothing is downloaded)"
        scorer = _load_clip(str(path), spec.model.clip_batch_size, tuple(spec.model.clip_templates))
        return ClipHeavyScorer(scorer, spec), f"CLIP from {path}"

    def labeler_for(self, spec: TaskSpec) -> tuple[Labeler | None, str]:
        """The language model of a text task's heavy tier (spec `heavy:`), or None and why
        there is none; the description names the model and endpoint, never the key."""
        if spec.heavy is None:
            return None, "off (no heavy: in the task spec)"
        if spec.heavy.kind == "transformers":
            path = Path(spec.heavy.path or "").expanduser()
            if not path.is_dir():
                return None, f"heavy.path {str(path)!r} is not a folder (nothing is downloaded)"
            local = _load_local(str(path.resolve()), spec.heavy, tuple(spec.label_names))
            return local, f"{local.kind} model from {path}"
        labeler = ChatLabeler(spec.heavy, spec.label_names)
        return labeler, f"{spec.heavy.model} at {labeler.where}"

    def store_for(self, task: str) -> ModelStore:
        return ModelStore(Path(self.models_dir) / task)
