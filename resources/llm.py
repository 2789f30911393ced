"""The heavy tier's connection: any OpenAI-compatible Chat Completions server (vLLM, Ollama,
llama.cpp's server, LM Studio, OpenAI, gateways) through the official `openai` client.

The endpoint is the spec's `heavy.base_url`, else `OPENAI_BASE_URL`; the key only ever comes
from `OPENAI_API_KEY` (local servers need none) and is never written anywhere: errors are
reported by their class and HTTP status, never by the request. The client retries 408, 409,
429, 5xx and connection errors itself, with exponential backoff and jitter, honouring
`Retry-After` (`heavy.max_retries`, `heavy.timeout_seconds`)."""

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from annotation_assets.core.llm import (
    ANSWERED,
    INVALID_ANSWER,
    UNAVAILABLE,
    Answer,
    agreement,
    bounded,
    parse_answer,
    response_format,
    span_probability,
)
from annotation_assets.core.spec import HeavySettings

# A server that does not take a parameter answers 400 (or 422); the request is sent again
# without it, and the rest of the run leaves it out.
_UNSUPPORTED = (400, 422)


def _failure(err: Exception) -> str:
    """One line about a failed request, without the request itself (headers hold the key)."""
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code} ({type(err).__name__})"
    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    if isinstance(err, openai.APIConnectionError):
        return "connection failed"
    return f"bad response ({type(err).__name__})"


class ChatLabeler:
    """Asks one Chat Completions model for a label, a record at a time (thread-safe: the
    heavy stage calls it from `heavy.concurrency` threads)."""

    def __init__(
        self,
        settings: HeavySettings,
        labels: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.labels = list(labels)
        self.base_url = settings.base_url or env.get("OPENAI_BASE_URL") or None
        self.client = openai.OpenAI(
            api_key=env.get("OPENAI_API_KEY") or "no-key",
            base_url=self.base_url,
            max_retries=settings.max_retries,
            timeout=settings.timeout_seconds,
        )
        self._lock = threading.Lock()
        self.structured = settings.structured_output != "plain"
        self.logprobs = settings.logprobs

    @property
    def version(self) -> str:
        return f"llm:{self.settings.model}"

    def answer_settings(self) -> dict[str, Any]:
        """The settings that change an answer (part of the response cache's key)."""
        s = self.settings
        return {
            "samples": s.samples,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "labels": self.labels,
        }

    def _request(self, messages: list[dict[str, str]], n: int) -> Any:
        while True:
            with self._lock:
                structured, logprobs = self.structured, self.logprobs
            kwargs: dict[str, Any] = {
                "model": self.settings.model,
                "messages": messages,
                "temperature": self.settings.temperature,
                "max_tokens": self.settings.max_tokens,
            }
            if n > 1:
                kwargs["n"] = n
            if structured:
                kwargs["response_format"] = response_format(self.labels)
            if logprobs:
                kwargs["logprobs"] = True
            try:
                return self.client.chat.completions.create(**kwargs), structured
            except openai.APIStatusError as err:
                if err.status_code not in _UNSUPPORTED or not (structured or logprobs):
                    raise
                # drop what the server may not support, structured output first; a fixed
                # `structured_output: json_schema` is never dropped
                with self._lock:
                    if structured and self.settings.structured_output == "auto":
                        self.structured = False
                    elif logprobs:
                        self.logprobs = False
                    else:
                        raise
                continue

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        """The model's answer to one prompt: its label when valid, with the label's token
        probability (or, without log-probabilities, the share of `heavy.samples` answers that
        agree); an invalid or failed answer comes back with its reason and no label."""
        start = time.perf_counter()
        samples: list[str | None] = []
        reasons: list[str] = []
        probability: float | None = None
        tokens_in = tokens_out = 0
        want = self.settings.samples
        try:
            while len(samples) < want:
                response, structured = self._request(messages, want - len(samples))
                usage = getattr(response, "usage", None)
                tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
                tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
                if not response.choices:
                    samples.append(None)
                    reasons.append("no choices in the response")
                for choice in response.choices[: want - len(samples)]:
                    content = choice.message.content if choice.message else None
                    label, why, span = parse_answer(content, self.labels, structured=structured)
                    samples.append(label)
                    if why:
                        reasons.append(why)
                    if probability is None and label is not None and want == 1:
                        probability = span_probability(_tokens(choice), span)
        except Exception as err:  # noqa: BLE001 - any failure of the server or its answer
            # (a malformed body included) leaves the record for review, never fails the stage
            return Answer(
                None,
                float("nan"),
                UNAVAILABLE,
                _failure(err),
                tokens_in,
                tokens_out,
                time.perf_counter() - start,
            )
        latency = time.perf_counter() - start
        label, share = agreement(samples)
        if label is None:
            return Answer(
                None,
                float("nan"),
                INVALID_ANSWER,
                bounded(reasons[0] if reasons else "no valid answer"),
                tokens_in,
                tokens_out,
                latency,
                samples=samples,
            )
        confidence = probability if probability is not None else share
        return Answer(
            label, confidence, ANSWERED, "", tokens_in, tokens_out, latency, samples=samples
        )


def _tokens(choice: Any) -> list[tuple[str, float]]:
    """The (token, log-probability) pairs of a choice's content, [] when the server sent
    none."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return []
    return [(str(t.token), float(t.logprob)) for t in content if t is not None]
