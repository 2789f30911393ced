"""The Dagster entry point: `dagster dev -m definitions` or `dagster dev -w workspace.yaml`.

The home comes from $ANNOTATION_HOME (default ./annotation_home), the task specs from
$ANNOTATION_TASKS (default the project's tasks/ folder), and the executor from
$ANNOTATION_EXECUTOR (annotation_assets/executors.py; default multiprocess)."""

import os

from annotation_assets.executors import executor_from_env
from annotation_assets.home import resolve_home, resolve_tasks_dir
from annotation_assets.project import build_definitions

defs = build_definitions(
    resolve_home(),
    resolve_tasks_dir(),
    encoder_path=os.environ.get("ANNOTATION_ENCODER", ""),
    clip_path=os.environ.get("ANNOTATION_CLIP", ""),
    executor=executor_from_env(),
)
