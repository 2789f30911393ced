"""Trained label models kept on disk: pickled under one folder by version (the version is a
digest of what the model was trained on, so a model trained before is loaded, not retrained)."""

import os
import pickle
from pathlib import Path
from typing import TypeVar

from annotation_assets.core.classifier import LabelModel
from annotation_assets.core.fast_model import FastModel

StoredModel = TypeVar("StoredModel", LabelModel, FastModel)


class ModelStore:
    """Trained label models, pickled under one folder by version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        return self.root / f"{version}.pkl"

    def load(
        self,
        version: str,
        kind: type[StoredModel] = LabelModel,  # type: ignore[assignment]
    ) -> StoredModel | None:
        path = self.path(version)
        if not path.exists():
            return None
        with open(path, "rb") as fh:
            model = pickle.load(fh)
        return model if isinstance(model, kind) else None

    def save(self, model: LabelModel | FastModel) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(model.version)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden: a kill may leave it
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(model, fh)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
