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


def test_a_broken_spec_loads_the_other_tasks_and_shows_its_error(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    import dagster as dg

    from annotation_assets.home import Home
    from annotation_assets.project import build_definitions

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "good.yaml").write_text("name: good\nkind: text_classification\nlabels: [a, b]\n")
    (tasks / "bad.yaml").write_text("name: bad\nkind: text_classification\nlabels: [a, b]\nx: 1\n")
    with pytest.warns(UserWarning, match="bad.yaml: x"):
        defs = build_definitions(
            Home(tmp_path / "home").create(), tasks, encoder_path=str(tiny_encoder_dir)
        )
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "good/final_dataset" in keys and not any(k.startswith("bad/") for k in keys)
    errors = defs.resolve_assets_def("task_spec_errors")
    assert "bad.yaml: x" in (errors.descriptions_by_key[dg.AssetKey("task_spec_errors")] or "")
    result = dg.materialize([errors], raise_on_error=False)
    assert not result.success
