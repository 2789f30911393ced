"""The `annotate` CLI run in a subprocess, as a user runs it, for the end-to-end tests."""

import os
import subprocess
import sys
from pathlib import Path


def annotate_argv(home: Path, *args: str, tasks: Path | None = None) -> list[str]:
    """The command line of `annotate --home HOME [--tasks TASKS] ARGS...`, run by this
    interpreter (`python -m annotation_assets.cli`)."""
    argv = [sys.executable, "-m", "annotation_assets.cli", "--home", str(home)]
    if tasks is not None:
        argv += ["--tasks", str(tasks)]
    return [*argv, *args]


class Cli:
    """`annotate` on one home, offline: with a tasks folder and an encoder when given (the
    defaults otherwise); `env` may be changed before a call."""

    def __init__(self, home: Path, tasks: Path | None, encoder: Path | None) -> None:
        self.home = home
        self.tasks = tasks
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.env.pop("ANNOTATION_HOME", None)
        if encoder is not None:
            self.env["ANNOTATION_ENCODER"] = str(encoder)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            annotate_argv(self.home, *args, tasks=self.tasks),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=600,
        )
