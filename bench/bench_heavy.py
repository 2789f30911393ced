"""The heavy stage's own cost per record against bare HTTP round trips to the same server.

    .venv/bin/python bench/bench_heavy.py [--records 500] [--concurrency 1 4]

Starts the loopback Chat Completions server of the tests (tests/llm_server.py: answers at
once, with log-probabilities) and sends the same prompts two ways, in the same run:

- baseline: bare round trips, `httpx2.Client.post` (the HTTP client under `openai`) of the
  request body the stage sends, from as many threads as the stage uses, reading the JSON
  answer and nothing more;
- ours: `ChatLabeler.ask` (the openai client, structured output, answer parsing, confidence)
  from `concurrency` threads, as `heavy_labels` calls it.

Prints records/s of each, the ratio, and the overhead per record in milliseconds. A real
model's answer takes 50 ms to seconds, so the figure says what the stage adds to that.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402  (the HTTP client the openai client uses)
from harness import cpu_flags  # noqa: E402

from annotation_assets.core.llm import build_messages, response_format  # noqa: E402
from annotation_assets.core.spec import HeavySettings  # noqa: E402
from resources.llm import ChatLabeler  # noqa: E402
from tests.llm_server import ChatServer  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def timed(fn, prompts, workers: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fn, prompts))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    server = ChatServer(labels=LABELS).start()
    print(f"cpu: {cpu_flags()}; python {platform.python_version()}")
    prompts = [
        build_messages(
            "Sentiment of product reviews.", dict.fromkeys(LABELS, ""), [], f"review {i}"
        )
        for i in range(args.records)
    ]
    try:
        for workers in args.concurrency:
            settings = HeavySettings(
                kind="llm", model="bench", base_url=server.base_url, concurrency=workers
            )
            labeler = ChatLabeler(settings, LABELS, env={})
            client = httpx.Client(timeout=60)
            body = {"model": "bench", "temperature": 0.0, "max_tokens": 32, "logprobs": True}
            body["response_format"] = response_format(LABELS)

            def bare(messages, client=client, body=body):  # type: ignore[no-untyped-def]
                r = client.post(
                    f"{server.base_url}/chat/completions", json=body | {"messages": messages}
                )
                return r.json()["choices"][0]["message"]["content"]

            bare(prompts[0])
            labeler.ask(prompts[0])  # warm both connections
            t_bare = timed(bare, prompts, workers)
            t_ours = timed(labeler.ask, prompts, workers)
            n = len(prompts)
            print(
                f"concurrency {workers}: bare HTTP {n / t_bare:,.0f} records/s, stage client "
                f"{n / t_ours:,.0f} records/s (ratio {t_bare / t_ours:.2f}); overhead "
                f"{1000 * (t_ours - t_bare) / n:+.2f} ms per record"
            )
            client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
