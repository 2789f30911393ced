"""The language-model tier's pure parts: the prompt built from a task's spec, the answer read
back from a Chat Completions message, its confidence (token log-probabilities or the agreement
of sampled answers) and its calibration on human decisions. No HTTP, no DuckDB, no Dagster
here: resources/llm.py talks to the server, stages/heavy.py to the warehouse.

An answer is accepted as a label only when it is exactly one of the task's labels (after
surrounding whitespace is dropped; for a structured answer, the `label` field of the JSON
object): anything else is an `invalid_answer`, whatever the model's confidence."""

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from sklearn.isotonic import IsotonicRegression

from annotation_assets.core.calibration import expected_calibration_error

ANSWERED = "answered"
INVALID_ANSWER = "invalid_answer"
UNAVAILABLE = "unavailable"  # the server could not be reached, kept failing, or was given up on
NOT_SENT = "not_sent"  # over heavy.max_records_per_drop
HEAVY_STATUSES = (ANSWERED, INVALID_ANSWER, UNAVAILABLE, NOT_SENT)
DETAIL_CHARS = 200  # how much of a bad answer or error is kept


@dataclass(frozen=True)
class Example:
    """A labeled text shown to the model before the record (a few-shot turn)."""

    text: str
    label: str


@dataclass
class Answer:
    """What the model said about one record: the label (None unless exactly one of the task's
    labels), its raw confidence, why it has no label, and what the answer cost."""

    label: str | None
    confidence: float
    status: str
    detail: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cached: bool = False
    samples: list[str | None] = field(default_factory=list)
    cacheable: bool = True  # False for a glitch worth asking again (no choices, empty content)

    def as_cached(self) -> "Answer":
        return Answer(
            self.label,
            self.confidence,
            self.status,
            self.detail,
            self.tokens_in,
            self.tokens_out,
            0.0,
            cached=True,
            samples=list(self.samples),
        )


class Labeler(Protocol):
    """Asks a language model for one record's label (resources/llm.py: any OpenAI-compatible
    Chat Completions server)."""

    @property
    def version(self) -> str: ...

    def answer_settings(self) -> dict[str, Any]: ...

    def ask(self, messages: list[dict[str, str]]) -> Answer: ...


def public_endpoint(url: str | None) -> str:
    """An endpoint as logs and metadata show it: without a user:password part or query."""
    if not url:
        return "the OpenAI API (no heavy.base_url or OPENAI_BASE_URL)"
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def system_message(description: str, labels: dict[str, str]) -> str:
    """The instruction: the task's description, then every label with its description, and
    the one thing to answer with."""
    lines = []
    if description.strip():
        lines += [description.strip(), ""]
    lines.append("Classify the text the user gives into exactly one of these labels:")
    for name, about in labels.items():
        lines.append(f"- {name}: {about.strip()}" if about.strip() else f"- {name}")
    lines += [
        "",
        "Answer with the label only, spelled exactly as above, and nothing else.",
    ]
    return "\n".join(lines)


def build_messages(
    description: str, labels: dict[str, str], examples: Sequence[Example], text: str
) -> list[dict[str, str]]:
    """The chat messages for one record: the instruction, each example as a user turn and
    the assistant's label, and the record's text last, alone in the last user message."""
    messages = [{"role": "system", "content": system_message(description, labels)}]
    for example in examples:
        messages.append({"role": "user", "content": example.text})
        messages.append({"role": "assistant", "content": example.label})
    messages.append({"role": "user", "content": text})
    return messages


def response_format(labels: Sequence[str]) -> dict[str, Any]:
    """The structured-output request: a JSON object whose `label` is one of the labels."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "label",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(labels)}},
                "required": ["label"],
                "additionalProperties": False,
            },
        },
    }


def cache_key(model: str, messages: Sequence[dict[str, str]], settings: dict[str, Any]) -> str:
    """The response cache's key: the model, every message and the sampling settings that
    change the answer (not the server's address or key)."""
    blob = json.dumps(
        {"model": model, "messages": list(messages), "settings": settings},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def bounded(text: str | None, limit: int = DETAIL_CHARS) -> str:
    """At most `limit` characters of `text`, valid UTF-8 (a lone surrogate from a model's
    answer would make the warehouse refuse the row)."""
    text = "" if text is None else str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def parse_answer(
    content: str | None, labels: Sequence[str], *, structured: bool
) -> tuple[str | None, str, tuple[int, int] | None]:
    """(label, why not, where the label sits in `content`): the label when the answer is
    exactly one of `labels`, else None and a one-line reason. A structured answer is a JSON
    object with a string `label`; a plain answer is the label alone."""
    if not isinstance(content, str):
        return None, f"not text: {type(content).__name__}", None
    if not content.strip():
        return None, "empty answer", None
    allowed = set(labels)
    if structured:
        try:
            obj = json.loads(content)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("label"), str):
            value = obj["label"]
            if value in allowed:
                quoted = json.dumps(value, ensure_ascii=False)
                at = content.find(quoted)
                span = (at + 1, at + len(quoted) - 1) if at >= 0 else None
                return value, "", span
            return None, f"not a label: {bounded(json.dumps(value), 80)}", None
        # a server that ignored response_format may still answer plainly
    value = content.strip()
    if value in allowed:
        start = content.find(value)
        return value, "", (start, start + len(value))
    return None, f"not a label: {bounded(json.dumps(content), 80)}", None


def span_probability(
    tokens: Sequence[tuple[str, float | None]],
    span: tuple[int, int] | None,
    content: str | None = None,
) -> float | None:
    """The probability the model gave the characters in `span` of its answer: exp of the sum
    of the log-probabilities of the tokens that overlap it; 0 for a token of probability 0,
    None when a log-probability is missing or none overlap. The tokens must spell the answer
    (`content`) out, else None."""
    if span is None or not tokens:
        return None
    if content is not None and "".join(t for t, _ in tokens) != content:
        return None
    start, end = span
    pos, total, seen = 0, 0.0, False
    for token, logprob in tokens:
        lo, hi = pos, pos + len(token)
        pos = hi
        if hi > start and lo < end:
            if logprob is None or math.isnan(logprob) or logprob == math.inf:
                return None
            if logprob == -math.inf:
                return 0.0
            total += logprob
            seen = True
    if not seen:
        return None
    return float(min(1.0, math.exp(total)))


def agreement(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """The majority valid label of sampled answers and the share of all samples that gave
    it (an invalid sample counts against); (None, nan) when no sample was valid. Ties go to
    the label answered first."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return None, float("nan")
    counts = Counter(valid)
    top = max(counts.values())
    label = next(a for a in valid if counts[a] == top)
    return label, top / len(answers)


def label_probabilities(label: int, confidence: float, n_labels: int) -> np.ndarray:
    """A probability row for one answer: `confidence` on its label, the rest spread evenly."""
    rest = (1.0 - confidence) / (n_labels - 1) if n_labels > 1 else 0.0
    row = np.full(n_labels, rest)
    row[label] = confidence
    return row


@dataclass
class AnswerCalibration:
    """A monotone map from the model's raw confidence to the share of its answers people
    agreed with, fitted on the answers people have since decided."""

    n_reviewed: int
    accuracy: float
    ece_before: float
    ece_after: float
    iso: IsotonicRegression | None

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.iso is None:
            return raw
        out = raw.copy()
        known = ~np.isnan(raw)
        if known.any():
            out[known] = self.iso.predict(raw[known])
        return out

    def metrics(self) -> dict[str, float | int]:
        return {
            "reviewed": self.n_reviewed,
            "accuracy_on_reviewed": self.accuracy,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
        }


def fit_answer_calibration(raw: np.ndarray, correct: np.ndarray) -> AnswerCalibration:
    """Isotonic regression of `correct` (0/1, a person's decision agreeing with the answer) on
    the raw confidence; the identity while fewer than two outcomes were seen. ECE before and
    after are measured on the same decisions (in-sample: a lower bound for `after`)."""
    raw = np.asarray(raw, dtype=float)
    correct = np.asarray(correct, dtype=float)
    keep = ~np.isnan(raw) & ~np.isnan(correct)
    raw, correct = raw[keep], correct[keep]
    if len(raw) == 0:
        return AnswerCalibration(0, float("nan"), float("nan"), float("nan"), None)
    before = expected_calibration_error(raw, correct)
    iso = None
    if len(np.unique(correct)) > 1 and len(np.unique(raw)) > 1:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(raw, correct)
    calibration = AnswerCalibration(len(raw), float(correct.mean()), before, float("nan"), iso)
    calibration.ece_after = expected_calibration_error(calibration(raw), correct)
    return calibration
