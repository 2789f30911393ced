"""The demo's exports are the same, byte for byte apart from timestamps, as a reference commit's.

The code is refactored in place (issue 19: stages, tiers, warehouse helpers); this runs the
bundled demo and every export (dataset, Label Studio queue, CSV queue) with the reference
commit's code and with the working tree's, in the same virtual environment on the same
machine, and compares the files. Slow (two demo runs): `.venv/bin/pytest -m slow
tests/test_demo_exports.py`. Set DEMO_REFERENCE_COMMIT to compare against another commit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the last commit before the stages/tiers refactor
REFERENCE_COMMIT = os.environ.get("DEMO_REFERENCE_COMMIT", "2c76483")
TASKS = ("product_reviews", "product_images")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?")

# Runs `annotate` from the code under PYTHONPATH, not from the venv's editable install.
LAUNCH = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
from annotation_assets.cli import main
sys.argv[0] = "annotate"
sys.exit(main())
"""


def annotate(code: Path, home: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    env.pop("ANNOTATION_HOME", None)
    env.pop("ANNOTATION_TASKS", None)
    cmd = [sys.executable, "-c", LAUNCH, "--home", str(home), *args]
    result = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stderr[-3000:]}"


def demo_exports(code: Path, work: Path) -> dict[str, bytes]:
    home, out = work / "home", work / "out"
    annotate(code, home, "demo")
    for task in TASKS:
        annotate(code, home, "export", task, "--out", str(out / "exports"))
        for fmt, ext in (("label-studio", "json"), ("csv", "csv")):
            queue = out / f"{task}.queue.{ext}"
            annotate(code, home, "review", "export", task, "--out", str(queue), "--format", fmt)
    return {
        str(path.relative_to(out)): TIMESTAMP.sub("<timestamp>", path.read_text(encoding="utf-8"))
        .replace(str(work), "<work>")
        .encode()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_demo_exports_match_the_reference_commit(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", REFERENCE_COMMIT], capture_output=True, timeout=120
    )
    if archive.returncode != 0:
        pytest.skip(f"reference commit {REFERENCE_COMMIT} not in this clone's history")
    subprocess.run(["tar", "-x", "-C", str(reference)], input=archive.stdout, check=True)

    before = demo_exports(reference, tmp_path / "before")
    after = demo_exports(ROOT, tmp_path / "after")

    assert sorted(before) == sorted(after)
    assert len(before) >= 8  # two datasets, two queues in two formats, their label configs
    for name in before:
        assert before[name] == after[name], f"{name} differs from {REFERENCE_COMMIT}'s"
