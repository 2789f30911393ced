"""Both documented ways of loading the project into Dagster find every task."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from annotation_assets.home import PROJECT_ROOT


@pytest.mark.parametrize("target", [["-w", "workspace.yaml"], ["-m", "definitions"]])
def test_dagster_loads_the_code_location(target: list[str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ANNOTATION_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path),
    }
    dagster = Path(sys.executable).parent / "dagster"
    p = subprocess.run(
        [str(dagster), "definitions", "validate", *target],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "All code locations passed validation" in p.stderr + p.stdout
