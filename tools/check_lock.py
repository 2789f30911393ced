"""Refuse a lock file that no longer matches pyproject.toml, in one line naming `make lock`.

    python tools/check_lock.py pyproject.toml requirements.lock [lock-constraints.txt]

Offline and quick (no resolver runs): every requirement of the project (its dependencies and
every extra, markers evaluated for the lock's platform, Linux x86_64 CPython 3.11) must be
locked at a version its specifier admits, every pin of the constraints file must be locked
exactly, and every package the lock says it holds for the project must still be one the
project asks for. Transitive consistency of what is installed is `pip check`'s job.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REFRESH = "run `make lock` to refresh it"
# The platform `make lock` resolves for (its --python-version / --python-platform).
LOCK_PLATFORM = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")
VIA_PROJECT = re.compile(r"^#\s+(?:via\s+)?(\S+) \(pyproject\.toml\)")


class OutOfDate(Exception):
    """The lock does not satisfy the project's requirements."""


def read_pins(lock_text: str) -> tuple[dict[str, Version], set[str]]:
    """The lock's exact pins, and the packages it says the project itself asks for."""
    pins: dict[str, Version] = {}
    direct: set[str] = set()
    current: str | None = None
    for raw in lock_text.splitlines():
        line = raw.strip()
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            try:
                pins[current] = Version(match.group(2))
            except InvalidVersion as exc:
                bad = f"{match.group(1)}=={match.group(2)}"
                raise OutOfDate(f"{bad} is not a valid version") from exc
            continue
        via = VIA_PROJECT.match(line)
        if via and current is not None:
            direct.add(current)
    return pins, direct


def project_requirements(pyproject: dict) -> tuple[str, list[Requirement]]:
    project = pyproject.get("project", {})
    name = canonicalize_name(project.get("name", ""))
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    requirements = []
    for text in texts:
        try:
            requirements.append(Requirement(text))
        except InvalidRequirement as exc:
            raise OutOfDate(f"pyproject.toml has an invalid requirement {text!r}") from exc
    return name, requirements


def constraint_requirements(text: str) -> list[Requirement]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def check(pyproject_text: str, lock_text: str, constraints_text: str = "") -> None:
    """Raise OutOfDate with the first mismatch; return quietly when the lock fits."""
    pins, direct = read_pins(lock_text)
    if not pins:
        raise OutOfDate("the lock pins nothing")
    name, requirements = project_requirements(tomllib.loads(pyproject_text))
    env = {**default_environment(), **LOCK_PLATFORM}
    wanted: set[str] = set()
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        key = canonicalize_name(req.name)
        if key == name:  # an extra that names the project's own other extras
            continue
        wanted.add(key)
        if key not in pins:
            raise OutOfDate(f"{req.name} is required by pyproject.toml but not locked")
        if not req.specifier.contains(pins[key], prereleases=True):
            raise OutOfDate(f"{req.name} is locked at {pins[key]}, pyproject.toml asks {req}")
    for req in constraint_requirements(constraints_text):
        key = canonicalize_name(req.name)
        if key not in pins or not req.specifier.contains(pins[key], prereleases=True):
            locked = pins.get(key, "nothing")
            raise OutOfDate(f"{req.name} is locked at {locked}, the constraints pin {req}")
    unlocked = sorted(wanted - direct)
    if unlocked:
        raise OutOfDate(f"{', '.join(unlocked)} asked for by pyproject.toml, not locked for it")
    stale = sorted(direct - wanted)
    if stale:
        raise OutOfDate(f"{', '.join(stale)} locked for the project, which no longer asks for it")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: check_lock.py PYPROJECT LOCK [CONSTRAINTS]", file=sys.stderr)
        return 2
    paths = [Path(a) for a in argv]
    for path in paths:
        if not path.is_file():
            print(f"{path}: no such file; {REFRESH}", file=sys.stderr)
            return 1
    texts = [p.read_text(encoding="utf-8") for p in paths]
    try:
        check(*texts)
    except OutOfDate as exc:
        print(f"{paths[1]} is out of date with {paths[0]} ({exc}): {REFRESH}", file=sys.stderr)
        return 1
    except (tomllib.TOMLDecodeError, InvalidRequirement) as exc:
        print(f"cannot read {paths[0]} or its constraints ({exc}): {REFRESH}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
