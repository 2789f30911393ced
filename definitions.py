"""The Dagster entry point: `dagster dev -m definitions` or `dagster dev -w workspace.yaml`.

The home comes from $ANNOTATION_HOME (default ./annotation_home) and the task specs from
$ANNOTATION_TASKS (default the project's tasks/ folder)."""

import os

from annotation_assets.home import resolve_home, resolve_tasks_dir
from annotation_assets.project import build_definitions

defs = build_definitions(
    resolve_home(),
    resolve_tasks_dir(),
    encoder_path=os.environ.get("ANNOTATION_ENCODER", ""),
    clip_path=os.environ.get("ANNOTATION_CLIP", ""),
)
