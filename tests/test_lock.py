"""The lock file: what `make` installs, and the check that refuses a lock out of date."""

from __future__ import annotations

import importlib.util
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
DEPLOY_LOCK = (ROOT / "deploy" / "requirements.lock").read_text(encoding="utf-8")
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", re.MULTILINE)


def run_check(
    tmp_path: Path,
    pyproject: str,
    lock: str | bytes = LOCK,
    constraints: str = CONSTRAINTS,
    *,
    args: tuple[str, ...] = ("pyproject.toml", "requirements.lock", "lock-constraints.txt"),
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    lock_bytes = lock.encode() if isinstance(lock, str) else lock
    (tmp_path / "requirements.lock").write_bytes(lock_bytes)
    (tmp_path / "lock-constraints.txt").write_text(constraints, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(CHECK), *args],
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
    body = "\n".join(line for line in LOCK.splitlines() if not line.startswith("#"))
    blocks = re.split(r"\n(?=[a-z0-9])", body.lstrip())
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


@pytest.mark.parametrize(
    "edit, old, new",
    [
        ("an extra asked of a locked package", '"pandas>=2.2,<3"', '"pandas[excel]>=2.2,<3"'),
        ("requires-python", 'requires-python = ">=3.11,<3.13"', 'requires-python = ">=3.12"'),
        (
            "the build requirements",
            'requires = ["setuptools>=68"]',
            'requires = ["setuptools>=90"]',
        ),
        ("a URL requirement", '"pyyaml>=6",', '"pyyaml @ https://example.org/pyyaml.tar.gz",'),
    ],
)
def test_inputs_changed_since_the_lock_was_made_are_refused(
    tmp_path: Path, edit: str, old: str, new: str
) -> None:
    assert old in PYPROJECT, edit
    assert_refused(run_check(tmp_path, PYPROJECT.replace(old, new)), "changed since it was made")


def test_a_lock_without_its_fingerprint_is_refused(tmp_path: Path) -> None:
    lock = "\n".join(line for line in LOCK.splitlines() if "inputs-sha256" not in line)
    assert_refused(run_check(tmp_path, PYPROJECT, lock=lock), "no fingerprint")


def test_a_pin_whose_marker_leaves_out_linux_counts_as_not_locked(tmp_path: Path) -> None:
    lock = re.sub(
        r"^(matplotlib==\S+) \\$", r"\1 ; sys_platform == 'win32' \\", LOCK, flags=re.MULTILINE
    )
    assert lock != LOCK
    assert_refused(run_check(tmp_path, PYPROJECT, lock=lock), "matplotlib is required")


def test_a_prerelease_outside_the_range_is_refused(tmp_path: Path) -> None:
    lock = re.sub(r"^pyyaml==\S+", "pyyaml==7.0rc1", LOCK, flags=re.MULTILINE)
    assert lock != LOCK
    assert_refused(run_check(tmp_path, PYPROJECT, lock=lock), "pyyaml is locked at 7.0rc1")


@pytest.mark.parametrize(
    "pyproject, lock, constraints",
    [
        (PYPROJECT, LOCK.encode() + b"\n# \xff\xfe\n", CONSTRAINTS),
        (PYPROJECT.replace('"pyyaml>=6",', '"pyyaml>=6", 6,'), LOCK, CONSTRAINTS),
        (PYPROJECT, LOCK, CONSTRAINTS + "-r other.txt\n"),
        (PYPROJECT.replace('"pyyaml>=6",', '"pyyaml>=>6",'), LOCK, CONSTRAINTS),
    ],
    ids=["lock-not-utf8", "non-string-dependency", "constraints-include", "invalid-requirement"],
)
def test_unreadable_inputs_are_refused_in_one_line(
    tmp_path: Path, pyproject: str, lock: str | bytes, constraints: str
) -> None:
    result = run_check(tmp_path, pyproject, lock=lock, constraints=constraints)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "make lock" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_packaging_the_fingerprint_still_catches_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("check_lock_under_test", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "_packaging", lambda: None)
    module.check(PYPROJECT, LOCK, CONSTRAINTS)
    with pytest.raises(module.OutOfDate, match="changed since it was made"):
        module.check(PYPROJECT.replace('"pyyaml>=6",', '"pyyaml>=6.1",'), LOCK, CONSTRAINTS)


def test_the_deploy_lock_is_the_runtime_part_of_the_lock(tmp_path: Path) -> None:
    (tmp_path / "deploy.lock").write_text(DEPLOY_LOCK, encoding="utf-8")
    args = ("--subset-of", "requirements.lock", "deploy.lock")
    assert run_check(tmp_path, PYPROJECT, args=args).returncode == 0
    pins = dict(PIN.findall(DEPLOY_LOCK))
    assert "dagster-k8s" in pins and "torch" in pins
    assert not {"pytest", "mypy", "ruff", "playwright", "uv"} & set(pins)

    moved = re.sub(r"^(numpy==)\S+", r"\g<1>1.0.0", DEPLOY_LOCK, flags=re.MULTILINE)
    (tmp_path / "deploy.lock").write_text(moved, encoding="utf-8")
    result = run_check(tmp_path, PYPROJECT, args=args)
    assert result.returncode == 1
    assert "numpy==1.0.0, the main lock has" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_make_test_checks_the_lock_before_installing_it() -> None:
    # a dry run as after an edit of pyproject.toml: the check comes before the sync
    dry = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if "check_lock.py pyproject.toml" in line)
    sync = next(i for i, line in enumerate(lines) if "pip sync" in line)
    assert check < sync
