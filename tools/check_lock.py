"""Refuse a lock file that no longer matches pyproject.toml, in one line naming `make lock`.

    python tools/check_lock.py pyproject.toml requirements.lock [lock-constraints.txt]
    python tools/check_lock.py --stamp pyproject.toml requirements.lock [lock-constraints.txt]
    python tools/check_lock.py --subset-of requirements.lock deploy/requirements.lock

`--subset-of MAIN` checks a lock made from MAIN (the deploy image's runtime set, resolved with
MAIN as constraints): made from the same inputs (its fingerprint) and every pin equal to MAIN's.

`--stamp` (run by `make lock` after uv writes the lock) records in the lock's header a
fingerprint of what the lock was resolved from: the project's requirements and extras,
`requires-python`, the build requirements and the constraints file. The check, offline and
quick (no resolver runs), refuses the lock when that fingerprint no longer matches, naming
what changed where it can tell: a requirement locked outside its range or not locked, a
dependency dropped, a constraint the lock does not hold. It needs only the standard library
(so it can run before anything is installed); with `packaging` importable (or pip's copy of
it) it also names the requirement that no longer fits.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

REFRESH = "run `make lock` to refresh it"
STAMP_PREFIX = "# inputs-sha256: "
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
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)\s*(?:;([^\\]*))?")
VIA_PROJECT = re.compile(r"^#\s+(?:via\s+)?(\S+) \(pyproject\.toml\)")


class OutOfDate(Exception):
    """The lock does not match the project's requirements."""


def _packaging() -> Any | None:
    """The `packaging` library, or pip's vendored copy, or None."""
    try:
        import packaging.markers
        import packaging.requirements
        import packaging.utils
        import packaging.version

        return packaging
    except ImportError:
        pass
    try:
        from pip._vendor import packaging as vendored  # type: ignore[import-untyped]
        from pip._vendor.packaging import (  # type: ignore[import-untyped]  # noqa: F401
            markers,
            requirements,
            utils,
            version,
        )

        return vendored
    except ImportError:
        return None


def fingerprint(pyproject: dict[str, Any], constraints_text: str) -> str:
    """A digest of everything the lock is resolved from (order and whitespace of the TOML
    aside: the parsed values are hashed; comments of the constraints file are ignored)."""
    project = pyproject.get("project", {})
    constraints = [line.split("#", 1)[0].strip() for line in constraints_text.splitlines()]
    inputs = {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "requires-python": project.get("requires-python"),
        "build-system": pyproject.get("build-system", {}).get("requires", []),
        "constraints": [c for c in constraints if c],
        "platform": LOCK_PLATFORM,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def read_stamp(lock_text: str) -> str | None:
    for line in lock_text.splitlines()[:10]:
        if line.startswith(STAMP_PREFIX):
            return line[len(STAMP_PREFIX) :].strip()
    return None


def stamped(lock_text: str, digest: str) -> str:
    """The lock with its fingerprint line set (after uv's header comment)."""
    lines = [line for line in lock_text.splitlines() if not line.startswith(STAMP_PREFIX)]
    at = 0
    while at < len(lines) and lines[at].startswith("#"):
        at += 1
    lines.insert(at, f"{STAMP_PREFIX}{digest}")
    return "\n".join(lines) + "\n"


def read_pins(lock_text: str, pkg: Any) -> tuple[dict[str, Any], set[str]]:
    """The lock's exact pins that apply on the lock's platform, and the packages it says the
    project itself asks for."""
    env = {**pkg.markers.default_environment(), **LOCK_PLATFORM, "extra": ""}
    pins: dict[str, Any] = {}
    direct: set[str] = set()
    current: str | None = None
    for raw in lock_text.splitlines():
        line = raw.strip()
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            current = pkg.utils.canonicalize_name(name)
            if marker and marker.strip():
                try:
                    applies = pkg.markers.Marker(marker.strip()).evaluate(env)
                except pkg.markers.InvalidMarker as exc:
                    raise OutOfDate(f"{name} has an invalid marker {marker.strip()!r}") from exc
                if not applies:
                    current = None
                    continue
            try:
                pins[current] = pkg.version.Version(version)
            except pkg.version.InvalidVersion as exc:
                raise OutOfDate(f"{name}=={version} is not a valid version") from exc
            continue
        via = VIA_PROJECT.match(line)
        if via and current is not None:
            direct.add(current)
    return pins, direct


def _requirements(texts: list[Any], where: str, pkg: Any) -> list[Any]:
    out = []
    for text in texts:
        if not isinstance(text, str):
            raise OutOfDate(f"{where} holds {text!r}, not a requirement string")
        try:
            out.append(pkg.requirements.Requirement(text))
        except pkg.requirements.InvalidRequirement as exc:
            raise OutOfDate(f"{where} has an invalid requirement {text!r}") from exc
    return out


def check_requirements(
    pyproject: dict[str, Any], lock_text: str, constraints: str, pkg: Any
) -> None:
    """Names the first requirement the lock no longer fits (needs `packaging`)."""
    pins, direct = read_pins(lock_text, pkg)
    if not pins:
        raise OutOfDate("the lock pins nothing")
    project = pyproject.get("project", {})
    name = pkg.utils.canonicalize_name(str(project.get("name", "")))
    texts = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    if not isinstance(texts, list) or not isinstance(extras, dict):
        raise OutOfDate("pyproject.toml's dependencies are not a list of requirements")
    for extra in extras.values():
        texts.extend(extra if isinstance(extra, list) else [extra])
    env = {**pkg.markers.default_environment(), **LOCK_PLATFORM, "extra": ""}
    wanted: set[str] = set()
    for req in _requirements(texts, "pyproject.toml", pkg):
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        key = pkg.utils.canonicalize_name(req.name)
        if key == name:  # an extra naming the project's own other extras
            continue
        wanted.add(key)
        if key not in pins:
            raise OutOfDate(f"{req.name} is required by pyproject.toml but not locked")
        # a pre-release fits only a range that names one
        if not req.specifier.contains(pins[key], prereleases=bool(req.specifier.prereleases)):
            raise OutOfDate(f"{req.name} is locked at {pins[key]}, pyproject.toml asks {req}")
    lines = [line.split("#", 1)[0].strip() for line in constraints.splitlines()]
    for req in _requirements([c for c in lines if c], "lock-constraints.txt", pkg):
        key = pkg.utils.canonicalize_name(req.name)
        if key not in pins or not req.specifier.contains(pins[key], prereleases=True):
            locked = pins.get(key, "nothing")
            raise OutOfDate(f"{req.name} is locked at {locked}, the constraints pin {req}")
    unlocked = sorted(wanted - direct)
    if unlocked:
        raise OutOfDate(f"{', '.join(unlocked)} asked for by pyproject.toml, not locked for it")
    stale = sorted(direct - wanted)
    if stale:
        raise OutOfDate(f"{', '.join(stale)} locked for the project, which no longer asks for it")


def check(pyproject_text: str, lock_text: str, constraints_text: str = "") -> None:
    """Raise OutOfDate with the first mismatch found; return quietly when the lock fits."""
    pyproject = tomllib.loads(pyproject_text)
    pkg = _packaging()
    if pkg is not None:
        check_requirements(pyproject, lock_text, constraints_text, pkg)
    recorded = read_stamp(lock_text)
    if recorded is None:
        raise OutOfDate("it records no fingerprint of what it was made from")
    if recorded != fingerprint(pyproject, constraints_text):
        raise OutOfDate(
            "the requirements, extras, requires-python, build requirements or constraints"
            " changed since it was made"
        )


def check_subset(lock_text: str, main_text: str) -> None:
    """A lock resolved with the main lock as constraints: same inputs, the same versions."""
    recorded = read_stamp(lock_text)
    if recorded is None or recorded != read_stamp(main_text):
        raise OutOfDate("it was not made from the same inputs as the main lock")
    main = {m.group(1).lower(): m.group(2) for m in map(PIN.match, main_text.splitlines()) if m}
    pins = {m.group(1).lower(): m.group(2) for m in map(PIN.match, lock_text.splitlines()) if m}
    if not pins:
        raise OutOfDate("the lock pins nothing")
    for name, version in sorted(pins.items()):
        if main.get(name) != version:
            raise OutOfDate(f"{name}=={version}, the main lock has {main.get(name, 'nothing')}")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


USAGE = "usage: check_lock.py [--stamp] PYPROJECT LOCK [CONSTRAINTS] | --subset-of MAIN LOCK"


def main(argv: list[str]) -> int:
    mode = argv[0] if argv[:1] in (["--stamp"], ["--subset-of"]) else "--check"
    args = argv[1:] if mode != "--check" else argv
    if len(args) not in ((2,) if mode == "--subset-of" else (2, 3)):
        print(USAGE, file=sys.stderr)
        return 2
    paths = [Path(a) for a in args]
    try:
        texts = [p.read_text(encoding="utf-8") for p in paths] + [""]
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read the lock's inputs ({one_line(exc)}): {REFRESH}", file=sys.stderr)
        return 1
    try:
        if mode == "--subset-of":  # MAIN LOCK
            check_subset(texts[1], texts[0])
        elif mode == "--stamp":
            digest = fingerprint(tomllib.loads(texts[0]), texts[2])
            paths[1].write_text(stamped(texts[1], digest), encoding="utf-8")
        else:
            check(texts[0], texts[1], texts[2])
    except OutOfDate as exc:
        why = one_line(exc)
        print(f"{paths[1]} is out of date with {paths[0]} ({why}): {REFRESH}", file=sys.stderr)
        return 1
    except (tomllib.TOMLDecodeError, ValueError, TypeError, AttributeError) as exc:
        print(f"cannot read {paths[0]} ({one_line(exc)}): {REFRESH}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
