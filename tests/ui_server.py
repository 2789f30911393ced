"""Helpers for browser tests of the Dagster UI: build a demo home with `annotate demo`, and run
`dagster dev` on it in its own process group on a free loopback port.

No Playwright import here, so the module loads on machines without a browser."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation_assets.home import PROJECT_ROOT
from tests.cli import annotate_argv

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _env(home: Path, encoder: Path | str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANNOTATION_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "ANNOTATION_ENCODER": str(encoder),
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.pop("ANNOTATION_TASKS", None)
    env.update(extra or {})
    return env


def parse_demo_table(stdout: str) -> list[dict[str, str]]:
    """The per-drop rows of the table `annotate demo` prints (header starts with `task`)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["task", "drop"])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1 :]:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


@dataclass(frozen=True)
class DemoHome:
    root: Path
    encoder: Path
    drops: list[dict[str, str]]  # one row per drop of the demo's summary table

    def task_drops(self, task: str) -> list[dict[str, str]]:
        rows = [row for row in self.drops if row["task"] == task]
        if not rows:
            raise LookupError(f"the demo ran no drop of {task}: {self.drops}")
        return rows


def build_demo_home(home: Path, encoder: Path, *, timeout: float = 300) -> DemoHome:
    """Runs `annotate --home HOME demo` in a subprocess, as a user would."""
    proc = subprocess.run(
        annotate_argv(home, "demo"),
        cwd=PROJECT_ROOT,
        env=_env(home, encoder),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"annotate demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return DemoHome(home, encoder, parse_demo_table(proc.stdout))


def _get(url: str, data: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass
class DagsterDev:
    """`dagster dev -m definitions` on a home, in a new session (its own process group)."""

    home: Path
    encoder: Path | str
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, *, timeout: float = 120) -> "DagsterDev":
        self.port = self.port or free_port()
        self.log_path = self.log_path or self.home.parent / f"dagster-dev-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-m", "definitions"]
                + ["-p", str(self.port), "-h", HOST],
                cwd=PROJECT_ROOT,
                env=_env(self.home, self.encoder),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def _wait_ready(self, timeout: float) -> None:
        """Until /server_info answers and the code location has loaded."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if not ready:
                    _get(f"{self.url}/server_info")
                    ready = True
                answer = _get(f"{self.url}/graphql", {"query": LOCATIONS_QUERY})
                entries = answer["data"]["workspaceOrError"].get("locationEntries") or []
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [
                        e
                        for e in entries
                        if e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if errors:
                        raise RuntimeError(f"code location failed to load: {errors}")
                    return
            except (OSError, urllib.error.URLError, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, *, grace: float = 30) -> None:
        """SIGINT to the whole process group (dagster dev shuts down cleanly on it), then
        SIGKILL whatever is left after `grace` seconds."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.2)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


@contextlib.contextmanager
def dagster_dev(home: Path, encoder: Path | str, *, timeout: float = 120) -> Iterator[DagsterDev]:
    server = DagsterDev(home, encoder).start(timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
