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
    public_endpoint,
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
    def where(self) -> str:
        """The endpoint as shown in logs and metadata: without any user:password part."""
        return public_endpoint(self.base_url)

    @property
    def version(self) -> str:
        return f"llm:{self.settings.model}"

    def answer_settings(self) -> dict[str, Any]:
        """The settings that change an answer (part of the response cache's key)."""
        s = self.settings
        return {
            "endpoint": self.base_url or "",
            "structured_output": s.structured_output,
            "logprobs": s.logprobs,
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
                if err.status_code not in _UNSUPPORTED:
                    raise
                # drop a parameter the server says it does not take (its error names it); a
                # fixed `structured_output: json_schema` is never dropped. Any other 400 (a
                # prompt over the context length, say) fails this record only.
                said = f"{err.message} {err.body}".lower()
                with self._lock:
                    if (
                        structured
                        and self.settings.structured_output == "auto"
                        and any(w in said for w in ("response_format", "json_schema", "schema"))
                    ):
                        self.structured = False
                    elif logprobs and "logprob" in said:
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
        glitch = False  # no choices or empty content: not cached, asked again next run
        scored = None  # whether log-probabilities came back usable (None: none came back)
        try:
            while len(samples) < want:
                response, structured = self._request(messages, want - len(samples))
                usage = getattr(response, "usage", None)
                tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
                tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
                if not response.choices:
                    samples.append(None)
                    reasons.append("no choices in the response")
                    glitch = True
                for choice in response.choices[: want - len(samples)]:
                    content = choice.message.content if choice.message else None
                    label, why, span = parse_answer(content, self.labels, structured=structured)
                    samples.append(label)
                    if why:
                        reasons.append(why)
                        glitch = glitch or why == "empty answer"
                    if want == 1 and label is not None:
                        tokens = _tokens(choice)
                        if tokens is not None:  # asked and sent: the label's probability
                            probability = span_probability(tokens, span, content)
                            scored = probability is not None
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
                cacheable=not glitch,
            )
        if scored is None:
            confidence = share  # no log-probabilities: the agreement of the samples
        else:  # sent but unusable (not spelling the answer, a null): no confidence at all
            confidence = probability if probability is not None else float("nan")
        return Answer(
            label, confidence, ANSWERED, "", tokens_in, tokens_out, latency, samples=samples
        )


def _tokens(choice: Any) -> list[tuple[str, float | None]] | None:
    """The (token, log-probability) pairs of a choice's content (a null log-probability as
    None), None when the server sent none."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    return [
        (str(t.token), None if t.logprob is None else float(t.logprob))
        for t in content
        if t is not None
    ]
