"""The heavy stage for text: a language model behind an OpenAI-compatible Chat Completions
server (tests/llm_server.py, a real HTTP server on loopback), as its own asset."""

import json
import math
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annotation_assets.core import llm
from annotation_assets.core.spec import HeavySettings, SpecError, parse_task_spec
from annotation_assets.home import Home
from resources.llm import ChatLabeler
from resources.warehouse import Warehouse
from tests.conftest import BASE_SPEC, review_records
from tests.llm_server import ChatServer, Fault
from tests.test_assets import Deployment, _metadata

TASK = "reviews"
LABELS = ["negative", "neutral", "positive"]
KEY = "sk-test-0123456789abcdef-NEVER-STORED"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    chat = ChatServer(labels=list(LABELS)).start()
    try:
        yield chat
    finally:
        chat.stop()


def _settings(**kw: Any) -> HeavySettings:
    return HeavySettings(**({"kind": "llm", "model": "test-model"} | kw))


def _labeler(server: ChatServer, **kw: Any) -> ChatLabeler:
    settings = _settings(base_url=server.base_url, **kw)
    return ChatLabeler(settings, LABELS, env={"OPENAI_API_KEY": KEY})


def _ask(labeler: ChatLabeler, text: str) -> llm.Answer:
    return labeler.ask(
        llm.build_messages("Sentiment of reviews.", dict.fromkeys(LABELS, ""), [], text)
    )


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket closes


# ----------------------------------------------------------------------------- the pure parts


def test_only_an_exact_label_is_an_answer() -> None:
    parse = llm.parse_answer
    assert parse("positive", LABELS, structured=False)[0] == "positive"
    assert parse("  neutral\n", LABELS, structured=False)[0] == "neutral"
    assert parse('{"label": "negative"}', LABELS, structured=True)[0] == "negative"
    for bad in ("Positive", "positive.", "I think positive", "", None, "pos"):
        label, why, _ = parse(bad, LABELS, structured=False)
        assert label is None and why
    for bad in ('{"label": "great"}', '{"label": 1}', "[1]", '{"answer": "positive"}'):
        assert parse(bad, LABELS, structured=True)[0] is None
    # a server that ignored response_format and answered plainly is still read
    assert parse("positive", LABELS, structured=True)[0] == "positive"


def test_confidence_is_the_label_tokens_probability() -> None:
    content = '{"label": "positive"}'
    _, _, span = llm.parse_answer(content, LABELS, structured=True)
    tokens = [('{"label": "', 0.0), ("posit", math.log(0.9)), ("ive", math.log(0.5)), ('"}', 0.0)]
    assert llm.span_probability(tokens, span) == pytest.approx(0.45)
    assert llm.span_probability([], span) is None
    minus_inf = [('{"label": "', 0.0), ("positive", -math.inf), ('"}', 0.0)]
    assert llm.span_probability(minus_inf, span, content) == 0.0
    assert llm.span_probability([("posit", -0.1)], span, content) is None  # spells nothing
    assert (
        llm.span_probability([('{"label": "', 0.0), ("positive", None), ('"}', 0.0)], span) is None
    )
    assert llm.bounded("\ud800 x").encode("utf-8")  # a lone surrogate becomes storable
    assert llm.agreement(["a", "b", "a", None]) == ("a", 0.5)
    assert llm.agreement([None, None])[0] is None


def test_the_record_text_is_last_in_the_last_user_message() -> None:
    examples = [llm.Example("great value", "positive"), llm.Example("broke", "negative")]
    labels = {"negative": "unhappy", "neutral": "", "positive": "happy"}
    messages = llm.build_messages("Product reviews.", labels, examples, "THE RECORD")
    assert messages[-1] == {"role": "user", "content": "THE RECORD"}
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    system = messages[0]["content"]
    assert (
        "Product reviews." in system and "- negative: unhappy" in system and "- neutral" in system
    )


def test_calibration_maps_raw_confidence_to_the_share_people_agreed_with() -> None:
    raw = [0.6] * 50 + [0.95] * 50
    correct = [0.0] * 30 + [1.0] * 20 + [1.0] * 45 + [0.0] * 5
    cal = llm.fit_answer_calibration(np.array(raw), np.array(correct))
    assert cal.n_reviewed == 100
    assert cal(pytest.importorskip("numpy").array([0.6, 0.95])).tolist() == pytest.approx(
        [0.4, 0.9]
    )
    assert cal.ece_after < cal.ece_before
    all_right = llm.fit_answer_calibration(np.array([0.3, 0.6, 0.9]), np.ones(3))
    assert all_right(np.array([0.05, 0.6])).tolist() == [0.05, 0.6]  # one outcome: identity


def test_spec_errors_are_one_line_naming_the_field() -> None:
    for heavy, field in (
        ({"kind": "llm"}, "heavy: model"),
        ({"kind": "llm", "model": "m", "base_url": "ftp://x"}, "heavy.base_url"),
        ({"kind": "llm", "model": "m", "samples": 3}, "heavy"),
        ({"kind": "gpt", "model": "m"}, "heavy.kind"),
    ):
        with pytest.raises(SpecError) as err:
            parse_task_spec(dict(BASE_SPEC, heavy=heavy))
        assert field in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------- the client and the server


def test_structured_answer_with_logprobs(server: ChatServer) -> None:
    server.truth["good stuff"] = "positive"
    answer = _ask(_labeler(server), "good stuff")
    assert (answer.label, answer.status) == ("positive", llm.ANSWERED)
    expected = server.answer_for("good stuff", 0)[1]
    assert answer.confidence == pytest.approx(expected)
    request = server.requests[-1]
    assert (
        request["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == LABELS
    )
    assert request["logprobs"] is True
    assert request["messages"][-1] == {"role": "user", "content": "good stuff"}
    assert answer.tokens_in > 0 and answer.tokens_out == 3
    assert server.headers[-1]["authorization"] == f"Bearer {KEY}"


def test_a_server_without_structured_output_gets_plain_requests(server: ChatServer) -> None:
    server.json_schema = False
    server.truth["meh"] = "neutral"
    labeler = _labeler(server)
    assert _ask(labeler, "meh").label == "neutral"
    assert _ask(labeler, "meh").label == "neutral"
    statuses = [r["_status"] for r in server.requests]
    assert statuses == [400, 200, 200]  # asked once with response_format, then never again
    assert "response_format" not in server.requests[-1]


def test_without_logprobs_confidence_is_the_agreement_of_samples(server: ChatServer) -> None:
    server.logprobs = False
    server.accuracy = 0.6
    server.truth["hmm"] = "positive"
    answer = _ask(_labeler(server, samples=5, temperature=0.7), "hmm")
    assert answer.status == llm.ANSWERED
    assert len(answer.samples) == 5
    assert answer.confidence == pytest.approx(answer.samples.count(answer.label) / 5)
    assert server.requests[-1]["n"] == 5


def test_an_invalid_answer_is_never_a_label(server: ChatServer) -> None:
    server.invalid_rate = 1.0
    answer = _ask(_labeler(server), "anything")
    assert (answer.label, answer.status) == (None, llm.INVALID_ANSWER)
    assert "not a label" in answer.detail


def test_429_is_retried_after_the_servers_retry_after(server: ChatServer) -> None:
    server.script = [Fault(429, {"Retry-After": "1"}), Fault(429, {"Retry-After": "1"})]
    server.truth["x"] = "negative"
    answer = _ask(_labeler(server), "x")
    assert answer.label == "negative"
    assert [r["_status"] for r in server.requests] == [429, 429, 200]
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps


def test_500s_are_retried_then_given_up_on(server: ChatServer) -> None:
    server.script = [Fault(500), Fault(503)]
    assert _ask(_labeler(server), "x").status == llm.ANSWERED
    server.script = [Fault(500)] * 3
    answer = _ask(_labeler(server, max_retries=2), "x")
    assert (answer.status, answer.detail) == (llm.UNAVAILABLE, "HTTP 500 (InternalServerError)")


def test_a_slow_server_times_out(server: ChatServer) -> None:
    server.delay_s = 2.0
    answer = _ask(_labeler(server, timeout_seconds=0.3, max_retries=0), "x")
    assert (answer.status, answer.detail) == (llm.UNAVAILABLE, "timed out")


def test_a_dead_endpoint_is_unavailable_not_an_error() -> None:
    labeler = ChatLabeler(_settings(base_url=_dead_url(), max_retries=1), LABELS, env={})
    answer = _ask(labeler, "x")
    assert (answer.status, answer.detail) == (llm.UNAVAILABLE, "connection failed")


# ------------------------------------------------------------------------------- the pipeline

TRUTH = {
    0: "negative",
    1: "positive",
    2: "positive",
    3: "neutral",
    4: "negative",
    5: "positive",
    6: "neutral",
}


def _records(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return review_records(n, offset=offset)


def _truth(records: list[dict[str, Any]]) -> dict[str, str]:
    """The label the test server takes as true for each record's normalized text."""
    out = {}
    for i, record in enumerate(records):
        number = int(record["id"][1:])
        text = record["text"].replace("<p>", "").replace("</p>", "").replace("<b>", "")
        text = text.replace("</b>", "").replace("&amp;", "&")
        out[" ".join(text.split())] = TRUTH[number % 7]
        del i
    return out


@pytest.fixture
def deploy(
    tmp_path: Path,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
    server: ChatServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Deployment]:
    """A deployment in a home of its own, its task with the given `heavy:` settings (none:
    no heavy tier) pointing at the test server; OPENAI_API_KEY is set."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    def make(name: str, heavy: dict[str, Any] | None = None, **spec: Any) -> Deployment:
        overrides = dict(spec)
        if heavy is not None:
            base = {"kind": "llm", "model": "test-model", "base_url": server.base_url}
            overrides["heavy"] = base | heavy
        tasks = tasks_dir(overrides)
        home = Home(tmp_path / name).create()
        return Deployment(home, tasks, tiny_encoder_dir)

    return make


def _texts(d: Deployment, where: str, label: str = "h.label") -> list[tuple[str, str]]:
    return d.sql(  # type: ignore[return-value]
        f"SELECT n.text, {label} FROM {TASK}.heavy_labels h"
        f" JOIN {TASK}.normalized_records n USING (drop_id, record_id) WHERE {where}"
    )


def test_heavy_labels_accept_answers_and_the_review_rate_falls(
    deploy: Callable[..., Deployment], server: ChatServer, tmp_path: Path
) -> None:
    records = _records(70)
    server.truth.update(_truth(records))
    plain = deploy("plain")
    plain.drop("d1", records)
    assert plain.run("d1").success
    without = plain.counts("d1")
    assert server.requests == []

    d = deploy("with-heavy", {"accept_unreviewed": True})
    d.drop("d1", records)
    result = d.run("d1")
    assert result.success
    got = d.counts("d1")
    assert got["by_source"]["heavy"] > 0
    assert got["hitl_pending"] < without["hitl_pending"]
    accounted = got["final_rows"] + got["hitl_pending"] + got["quarantined"] + got["duplicates"]
    assert got["ingested"] == accounted
    meta = _metadata(result, "heavy_labels")
    assert meta["records_sent"] == without["hitl_pending"] == server.answered
    assert meta["accepted"] == got["by_source"]["heavy"]
    assert meta["tokens_in"] > 0 and meta["cache_hits"] == 0
    assert meta["latency_p95_s"] >= meta["latency_p50_s"] > 0
    # only records no earlier stage accepted were sent: none of those the rules settled
    sent = {r["messages"][-1]["content"] for r in server.requests}
    ruled = {text for text, _ in _texts(d, "h.source = 'rule'")}
    assert ruled and not sent & ruled
    for text, label in _texts(d, "h.source = 'heavy'"):
        assert text in sent and label in LABELS

    from tests.cli import Cli

    out = tmp_path / "export"
    cli = Cli(d.home.root, d.tasks, None)
    done = cli("export", TASK, "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / f"{TASK}.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "heavy" for r in rows) == got["by_source"]["heavy"]

    # a re-run asks the server nothing: every answer comes from the warehouse's cache
    before = server.answered
    again = d.run("d1")
    assert again.success and server.answered == before
    assert _metadata(again, "heavy_labels")["cache_hits"] == meta["records_sent"]
    assert d.counts("d1")["by_source"] == got["by_source"]

    # the key went to the server, and is in no file of the home
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    for path in d.home.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in "aeiouyz"]


def _noise(n: int, seed: int, prefix: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records of random words under random true labels: no rule fires and the small model
    cannot learn them, so every one reaches the heavy tier."""
    import random

    rng = random.Random(seed)
    records, truth = [], {}
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(8)) + f" {prefix}{i}"
        records.append({"id": f"{prefix}{i}", "text": text})
        truth[text] = rng.choice(LABELS)
    return records, truth


def test_a_dead_endpoint_leaves_records_in_review_and_the_run_green(
    deploy: Callable[..., Deployment],
) -> None:
    records, _ = _noise(60, 1, "n")
    d = deploy("dead", {"base_url": _dead_url(), "max_retries": 1, "accept_unreviewed": True})
    d.drop("d1", records)
    result = d.run("d1")
    assert result.success
    c = d.counts("d1")
    assert c["by_source"]["heavy"] == 0
    assert c["ingested"] == c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
    meta = _metadata(result, "heavy_labels")
    assert meta["unavailable"] == meta["records_sent"] == c["hitl_pending"] > 0
    reasons = dict(d.sql(f"SELECT reason, count(*) FROM {TASK}.hitl_pending GROUP BY 1"))
    assert reasons == {"heavy_unavailable": c["hitl_pending"]}
    details = {x for (x,) in d.sql(f"SELECT DISTINCT heavy_detail FROM {TASK}.heavy_labels")}
    # after a few failures in a row the rest are not sent: no wait on each record's retries
    assert {"connection failed", "not sent: the server failed 6 requests in a row"} <= details


def test_invalid_answers_and_the_cap_send_records_to_review_with_the_reason(
    deploy: Callable[..., Deployment], server: ChatServer
) -> None:
    records, truth = _noise(40, 2, "v")
    server.truth.update(truth)
    server.invalid_rate = 0.5
    d = deploy("invalid", {"accept_unreviewed": True, "max_records_per_drop": 30})
    d.drop("d1", records)
    result = d.run("d1")
    assert result.success
    meta = _metadata(result, "heavy_labels")
    statuses = dict(d.sql(f"SELECT heavy_status, count(*) FROM {TASK}.heavy_labels GROUP BY 1"))
    assert meta["records_sent"] == 30 == server.answered
    assert statuses["not_sent"] == meta["not_sent"] == 10
    assert statuses["invalid_answer"] == meta["invalid_answers"] > 0
    invalid = d.sql(
        f"SELECT p.reason, h.heavy_detail FROM {TASK}.hitl_pending p"
        f" JOIN {TASK}.heavy_labels h USING (drop_id, record_id)"
        " WHERE h.heavy_status = 'invalid_answer'"
    )
    assert len(invalid) == meta["invalid_answers"]
    assert all(r == "invalid_answer" and d.startswith("not a label") for r, d in invalid)
    assert not d.sql(
        f"SELECT 1 FROM {TASK}.final_dataset f JOIN {TASK}.heavy_labels h"
        " ON h.record_id = f.id WHERE h.heavy_status = 'invalid_answer'"
    )


class _Killed(BaseException):
    """What a kill does to the stage: not an error it may turn into a record's reason."""


class _Crashing:
    """A labeler that dies (as a killed process would stop answering) at its n-th request."""

    def __init__(self, inner: ChatLabeler, at: int) -> None:
        self.inner, self.at, self.calls = inner, at, 0
        self.version = inner.version
        self.answer_settings = inner.answer_settings

    def ask(self, messages: list[dict[str, str]]) -> llm.Answer:
        self.calls += 1
        if self.calls >= self.at:
            raise _Killed("killed")
        return self.inner.ask(messages)


def test_a_crash_rerun_is_served_from_the_cache(
    deploy: Callable[..., Deployment], server: ChatServer
) -> None:
    from annotation_assets.stages.heavy import CACHE_FLUSH_EVERY, label_by_heavy

    records, truth = _noise(150, 3, "c")
    server.truth.update(truth)
    d = deploy("crash", {"accept_unreviewed": True, "concurrency": 1})
    d.drop("d1", records)
    assert d.run("d1").success
    sent = server.answered
    assert sent > CACHE_FLUSH_EVERY + 10
    spec = parse_task_spec(
        dict(BASE_SPEC, heavy={"kind": "llm", "model": "other-model", "base_url": server.base_url})
    )
    warehouse = Warehouse.for_home(d.home)
    labeler = ChatLabeler(spec.heavy, spec.label_names, env={})  # type: ignore[arg-type]
    with pytest.raises(_Killed):
        label_by_heavy(
            warehouse.connect, spec, "d1", labeler=_Crashing(labeler, CACHE_FLUSH_EVERY + 6)
        )
    answered_before_crash = server.answered - sent
    result = label_by_heavy(warehouse.connect, spec, "d1", labeler=labeler)
    assert result.sent == sent
    assert result.cache_hits >= CACHE_FLUSH_EVERY
    assert server.answered - sent - answered_before_crash == sent - result.cache_hits


def test_calibration_keeps_heavy_acceptances_accurate_once_people_reviewed(
    deploy: Callable[..., Deployment], server: ChatServer, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    # A heavy model right 78% of the time, its confidence informative but over-confident.
    from tests.cli import Cli

    server.accuracy = 0.78
    first, truth1 = _noise(300, 4, "a")
    second, truth2 = _noise(300, 5, "b")
    server.truth.update(truth1 | truth2)
    d = deploy("calibrate", {"min_reviewed": 100})
    d.drop("d1", first)
    result = d.run("d1")
    assert result.success
    meta = _metadata(result, "heavy_labels")
    # too few reviewed answers: the model only suggests
    assert meta["may_accept"] is False and meta["accepted"] == 0
    assert meta["records_sent"] > 200
    suggested = d.sql(f"SELECT count(*) FROM {TASK}.hitl_pending WHERE suggested_by = 'heavy'")
    assert suggested[0][0] > 0

    # people decide the first drop's queue
    queue = d.sql(
        f"SELECT p.record_id, n.text FROM {TASK}.hitl_pending p"
        f" JOIN {TASK}.normalized_records n USING (drop_id, record_id)"
    )
    decisions = tmp_path / "decisions.csv"
    lines = ["record_id,label,annotator"] + [f"{rid},{truth1[text]},ann1" for rid, text in queue]
    decisions.write_text("\n".join(lines) + "\n")
    done = Cli(d.home.root, d.tasks, tiny_encoder_dir)("review", "import", TASK, str(decisions))
    assert done.returncode == 0, done.stderr[-2000:]
    # re-scoring the reviewed drop keeps the votes calibration is fitted on
    assert d.run("d1").success
    kept = d.sql(f"SELECT count(*) FROM {TASK}.heavy_labels WHERE heavy_label IS NOT NULL")
    assert kept[0][0] >= len(queue)

    d.drop("d2", second)
    asked = len(server.requests)
    result = d.run("d2")
    assert result.success
    # each prompt: the instruction, the spec's 3 examples and the 4 most similar decided
    # records as (user, assistant) turns, then the record
    prompt = server.requests[asked]["messages"]
    assert len(prompt) == 1 + 2 * (3 + 4) + 1
    shown = {m["content"] for m in prompt[7:-1:2]}
    assert shown <= set(truth1) and prompt[-1]["content"] in truth2
    meta = _metadata(result, "heavy_labels")
    assert meta["may_accept"] is True and meta["calibration_reviewed"] >= 100
    assert meta["calibration_ece_after"] <= meta["calibration_ece_before"]
    accepted = _texts(d, "h.drop_id = 'd2' AND h.source = 'heavy' AND h.accepted")
    assert len(accepted) >= 50
    precision = sum(truth2[text] == label for text, label in accepted) / len(accepted)
    assert precision >= 0.85, precision
    answered = _texts(d, "h.drop_id = 'd2' AND h.heavy_label IS NOT NULL", "h.heavy_label")
    raw_accuracy = sum(truth2[t] == lab for t, lab in answered) / len(answered)
    assert raw_accuracy < 0.85  # the model alone is not good enough; calibration is what helps


def test_a_malformed_response_leaves_the_record_for_review(server: ChatServer) -> None:
    server.garbage = True
    answer = _ask(_labeler(server, max_retries=0), "x")
    assert answer.status == llm.UNAVAILABLE and answer.label is None
    assert answer.detail.startswith("bad response")


def test_a_400_about_something_else_fails_one_record_not_structured_output(
    server: ChatServer,
) -> None:
    server.script = [Fault(400)]  # "scripted 400": names no parameter (a prompt too long)
    labeler = _labeler(server)
    assert _ask(labeler, "x").status == llm.UNAVAILABLE
    server.truth["y"] = "positive"
    answer = _ask(labeler, "y")
    assert answer.label == "positive" and "response_format" in server.requests[-1]
    assert not math.isnan(answer.confidence) and answer.confidence < 1.0


def test_usable_logprobs_or_no_confidence(server: ChatServer) -> None:
    """Log-probabilities that came back but do not spell the answer give no confidence (not
    the 1.0 of a single sample); none at all give the samples' agreement."""
    server.truth["z"] = "neutral"
    original = server.completion

    def broken(body: dict[str, Any]) -> dict[str, Any]:
        out = original(body)
        for choice in out["choices"]:
            choice["logprobs"]["content"] = choice["logprobs"]["content"][:1]
        return out

    server.completion = broken  # type: ignore[method-assign]
    answer = _ask(_labeler(server), "z")
    assert answer.label == "neutral" and math.isnan(answer.confidence)
    server.completion = original  # type: ignore[method-assign]
    server.logprobs = False
    assert _ask(_labeler(server), "z").confidence == 1.0
