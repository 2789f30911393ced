"""A small OpenAI-compatible Chat Completions server on loopback, for the heavy stage's tests.

It answers `POST /v1/chat/completions` as vLLM, Ollama or OpenAI would: `choices[].message.
content`, `usage`, and, when asked (`logprobs: true`) and enabled, `choices[].logprobs.content`
with one log-probability per token. The record's text is the last user message; the server
knows each text's true label (`truth`) and answers it right with probability `accuracy`
(decided per text and sample, reproducibly), else a wrong label. Its confidence (the label
token's probability) is informative but over-confident, as real models' are: right answers
draw from [0.80, 1.0), wrong ones from [0.55, 0.95).

Faults are scripted: `script` holds HTTP statuses (with headers) to answer the next requests
with, `delay_s` slows every answer, `invalid_rate` answers that many texts with prose, and
`json_schema` / `logprobs` switch those features off (a server without structured output
answers 400 to `response_format`, as llama.cpp's older servers do)."""

import contextlib
import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ChatServer:
    labels: list[str]
    truth: dict[str, str] = field(default_factory=dict)
    accuracy: float = 1.0
    invalid_rate: float = 0.0
    json_schema: bool = True
    logprobs: bool = True
    delay_s: float = 0.0
    garbage: bool = False  # answer 200 with a body that is not JSON
    script: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def answered(self) -> int:
        """Chat requests answered with 200."""
        with self.lock:
            return sum(1 for r in self.requests if r.get("_status") == 200)

    def answer_for(self, text: str, sample: int) -> tuple[str, float, bool]:
        """(content label or prose, confidence, is a label) for one text and sample."""
        seed = int(hashlib.sha256(f"{text}\x00{sample}".encode()).hexdigest()[:16], 16)
        rng = random.Random(seed)
        if rng.random() < self.invalid_rate:
            return "I think this one is hard to say.", 0.5, False
        true = self.truth.get(text, self.labels[seed % len(self.labels)])
        if rng.random() < self.accuracy:
            return true, rng.uniform(0.80, 1.0), True
        wrong = [label for label in self.labels if label != true]
        return rng.choice(wrong), rng.uniform(0.55, 0.95), True

    def start(self) -> "ChatServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # header and body go out at once

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                # the client may have given up waiting (a timeout test)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.times.append(time.monotonic())
                    fault = server.script.pop(0) if server.script else None
                if not self.path.endswith("/chat/completions"):
                    body["_status"] = 404
                    self._send(404, {"error": {"message": "not found"}}, {})
                    return
                if fault is not None:
                    body["_status"] = fault.status
                    error = {"error": {"message": f"scripted {fault.status}", "type": "test"}}
                    self._send(fault.status, error, fault.headers)
                    return
                if "response_format" in body and not server.json_schema:
                    body["_status"] = 400
                    error = {"message": "response_format is not supported", "type": "invalid"}
                    self._send(400, {"error": error}, {})
                    return
                if server.delay_s:
                    time.sleep(server.delay_s)
                if server.garbage:
                    body["_status"] = 200
                    data = b"<html>gateway says hello</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                body["_status"] = 200
                self._send(200, server.completion(body), {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        text = str(users[-1]["content"]) if users else ""
        structured = "response_format" in body
        with_logprobs = bool(body.get("logprobs")) and self.logprobs
        choices = []
        for i in range(int(body.get("n") or 1)):
            sample = len(self.requests) * 100 + i if body.get("temperature") else i
            answer, confidence, is_label = self.answer_for(text, sample)
            if structured and is_label:
                head, tail = '{"label": "', '"}'
            else:
                head, tail = "", ""
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": head + answer + tail},
                "finish_reason": "stop",
            }
            if with_logprobs:
                tokens = [(head, 0.0)] if head else []
                tokens.append((answer, math.log(confidence)))
                if tail:
                    tokens.append((tail, 0.0))
                choice["logprobs"] = {
                    "content": [
                        {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                        for t, lp in tokens
                    ]
                }
            choices.append(choice)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 3 * len(choices),
                "total_tokens": prompt_tokens + 3 * len(choices),
            },
        }

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
