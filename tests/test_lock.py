"""The lock file: what `make` installs, and the check that refuses a lock out of date."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tools" / "check_lock.py"
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
LOCK = (ROOT / "requirements.lock").read_text(encoding="utf-8")
CONSTRAINTS = (ROOT / "lock-constraints.txt").read_text(encoding="utf-8")
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", re.MULTILINE)


def run_check(
    tmp_path: Path, pyproject: str, lock: str = LOCK, constraints: str = CONSTRAINTS
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (tmp_path / "requirements.lock").write_text(lock, encoding="utf-8")
    (tmp_path / "lock-constraints.txt").write_text(constraints, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(CHECK), "pyproject.toml", "requirements.lock", "lock-constraints.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess[str], why: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("requirements.lock is out of date with pyproject.toml")
    assert "make lock" in lines[0]
    assert why in lines[0]


def test_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    result = run_check(tmp_path, PYPROJECT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_added_dependency_is_refused_even_when_locked_for_another_package(tmp_path: Path) -> None:
    # packaging is in the lock (others need it), but the lock was not made for the project's
    # own requirement of it
    assert re.search(r"^packaging==", LOCK, re.MULTILINE)
    pyproject = PYPROJECT.replace('"pyyaml>=6",', '"pyyaml>=6",\n    "packaging>=20",')
    assert_refused(run_check(tmp_path, pyproject), "packaging asked for by pyproject.toml")


def test_new_unlocked_dependency_is_refused(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('"pyyaml>=6",', '"pyyaml>=6",\n    "no-such-package-xyz>=1",')
    assert_refused(run_check(tmp_path, pyproject), "no-such-package-xyz is required")


def test_range_the_locked_version_leaves_is_refused(tmp_path: Path) -> None:
    locked_dask = re.search(r"^dask==(\S+)", LOCK, re.MULTILINE)
    assert locked_dask
    pyproject = PYPROJECT.replace(
        '"dask[distributed]>=2025.1",', f'"dask[distributed]>=2025.1,<{locked_dask.group(1)}",'
    )
    assert pyproject != PYPROJECT
    assert_refused(run_check(tmp_path, pyproject), f"dask is locked at {locked_dask.group(1)}")


def test_removed_dependency_is_refused(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('    "matplotlib>=3.8",\n', "")
    assert pyproject != PYPROJECT
    assert_refused(run_check(tmp_path, pyproject), "matplotlib locked for the project")


def test_constraint_the_lock_does_not_hold_is_refused(tmp_path: Path) -> None:
    lock = LOCK.replace("torch==2.13.0+cpu", "torch==2.13.0")
    assert lock != LOCK
    assert_refused(run_check(tmp_path, PYPROJECT, lock=lock), "the constraints pin torch")


def test_unreadable_pyproject_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_check(tmp_path, PYPROJECT + "\n[project\n")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "make lock" in result.stderr


def test_every_pin_is_exact_and_hashed() -> None:
    blocks = re.split(r"\n(?=[a-z0-9])", LOCK.split("\n", 2)[2])
    assert len(blocks) > 100
    for block in blocks:
        first = block.splitlines()[0]
        assert PIN.match(first), first
        assert "--hash=sha256:" in block, first


@pytest.mark.parametrize(
    "why, pair",
    [
        ("dask's distributed extra", ("dask", "distributed")),
        ("the dagster core family", ("dagster", "dagster-webserver")),
        ("the dagster core family", ("dagster", "dagster-graphql")),
    ],
)
def test_pairs_that_move_together_are_locked_together(why: str, pair: tuple[str, str]) -> None:
    pins = dict(PIN.findall(LOCK))
    assert pins[pair[0]] == pins[pair[1]], why


def test_dagster_integrations_match_the_core_release() -> None:
    pins = dict(PIN.findall(LOCK))
    major, minor, patch = pins["dagster"].split(".")
    assert major == "1"
    for name, version in pins.items():
        if name.startswith("dagster-") and version.startswith("0."):
            # integrations are numbered 0.(core minor + 16).(core patch)
            assert version == f"0.{int(minor) + 16}.{patch}", name


def test_torch_is_the_cpu_build() -> None:
    pins = dict(PIN.findall(LOCK))
    assert pins["torch"].endswith("+cpu")
    assert not [name for name in pins if name.startswith("nvidia-")]
