"""What the benches share: running a measurement in a child process (so its peak RSS is its
own) and writing the results file. Importing it puts the project root on sys.path, so a bench
run as `python bench/x.py` (and its children) can import `tools` (the synthetic reviews)."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def marked_result(stdout: str, mark: str) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object with `"mark": mark` (library output may
    come before it), or None."""
    for line in reversed(stdout.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("mark") == mark:
            return data
    return None


def run_child(
    script: Path, args: list[str], mark: str, log: Callable[[str], None]
) -> tuple[dict[str, Any] | None, int]:
    """Runs `python script *args` from the project root; its marked result (None when the
    child printed none) and its exit status."""
    cmd = [sys.executable, str(script.resolve()), *args]
    log(" ".join(cmd[1:]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, check=False)
    return marked_result(proc.stdout, mark), proc.returncode


def child_result(
    script: Path, args: list[str], mark: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """`run_child`'s result; a child that printed none is an error."""
    result, status = run_child(script, args, mark, log)
    if result is None:
        raise RuntimeError(f"child {args} failed (exit {status})")
    return result


def peak_rss_mib() -> float:
    """This process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def write_report(out: Path, bench: str, started: datetime, fields: dict[str, Any]) -> Path:
    """Writes `<out>/<bench>-<started>.json`: the bench, its start, the host and `fields`."""
    report = {
        "bench": bench,
        "started": started.isoformat(),
        "host": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        **fields,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{bench}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def measure_sizes(
    sizes: list[int],
    measure: Callable[[int], dict[str, Any]],
    format_table: Callable[[dict[str, Any]], str],
    out: Path,
    bench: str,
) -> int:
    """A bench's main loop: measures each size, prints its table as it comes, and writes
    every result to `<out>/<bench>-<start>.json`."""
    started = datetime.now(UTC)
    results = []
    for size in sizes:
        data = measure(size)
        results.append(data)
        print(format_table(data) + "\n", flush=True)
    path = write_report(out, bench, started, {"results": results})
    print(f"results written to {path}", flush=True)
    return 0


def cpu_flags() -> str:
    """The CPU model and which of its vector instructions matter to the encoder (AVX2,
    AVX-512, bfloat16): figures from machines that differ here are not comparable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "?"
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}; {' '.join(wanted) or 'no avx2'}"
