from pathlib import Path

import dagster as dg

from annotation_assets.core.encoder import TextEncoder, bundled_encoder_path, load_encoder
from annotation_assets.core.pipeline import ModelStore
from annotation_assets.core.spec import TaskSpec


class LabelModels(dg.ConfigurableResource):
    """Where label models live: the sentence encoder (a local transformers folder; the bundled
    all-MiniLM-L6-v2 unless a task or this resource names another) and trained heads."""

    models_dir: str
    encoder_path: str = ""

    def encoder_for(self, spec: TaskSpec) -> TextEncoder:
        path = spec.model.encoder or self.encoder_path or str(bundled_encoder_path())
        if not Path(path).is_dir():
            raise dg.Failure(
                f"encoder for task {spec.name!r} not found at {path} (model.encoder must be a "
                "local transformers folder; nothing is downloaded)"
            )
        return load_encoder(path, spec.model.max_length, spec.model.batch_size)

    def store_for(self, task: str) -> ModelStore:
        return ModelStore(Path(self.models_dir) / task)
