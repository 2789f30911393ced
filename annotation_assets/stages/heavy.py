"""The heavy stage: heavy_labels, the cascade's last automated tier.

Only the records every earlier stage left below the auto-accept threshold (and no person has
decided) are sent, in drop order, at most `heavy.max_records_per_drop` of them. Text tasks
ask a language model behind an OpenAI-compatible server (core/llm.py builds the prompt and
reads the answer, resources/llm.py talks to the server); image tasks ask zero-shot CLIP. The
stage writes, for every record of the drop, the heavy vote (where one was asked) and the
cascade's decision after it; hitl_pending and final_dataset read decisions from here.

A language model's answer is accepted only when it is exactly one of the labels, and only
once `heavy.min_reviewed` of its answers have been checked by people (its confidence is then
calibrated on them), unless the spec opts in with `heavy.accept_unreviewed`. An answer that
is not a label, or a server that stays down, sends the record to review with the reason:
the stage itself never fails on the server's account, and loses no record."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_assets.core.llm import (
    ANSWERED,
    INVALID_ANSWER,
    NOT_SENT,
    UNAVAILABLE,
    Answer,
    AnswerCalibration,
    Example,
    Labeler,
    build_messages,
    cache_key,
    fit_answer_calibration,
    label_probabilities,
)
from annotation_assets.core.routing import (
    NO_LABEL,
    Routed,
    StageVotes,
    keep_earlier_acceptances,
    route_unknown,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import HEAVY, Batch, HeavyScorer, HeavyTier, Progress, Tier
from annotation_assets.warehouse.codes import IMAGE_TEXT_SOURCE
from annotation_assets.warehouse.decisions import decided_records
from annotation_assets.warehouse.sql import (
    Connect,
    append_rows,
    drop_texts,
    q,
    registered,
    replace_rows,
)
from annotation_assets.warehouse.tables import transaction

CACHE_FLUSH_EVERY = 64  # answers written to the response cache at a time (a crash loses fewer)


@dataclass
class HeavyResult:
    n_records: int
    model: str  # what the heavy tier is ("off" when none)
    version: str | None
    sent: int = 0  # records the tier was asked about (cached answers included)
    answered: int = 0  # valid answers
    accepted: int = 0  # records the heavy tier auto-accepted
    invalid_answers: int = 0
    unavailable: int = 0
    not_sent: int = 0
    cache_hits: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    tokens_in: int = 0  # paid in this run (cache hits cost nothing)
    tokens_out: int = 0
    cost: float = 0.0
    may_accept: bool = True
    calibration: dict[str, Any] = field(default_factory=dict)
    accepted_by_source: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    kept_earlier: int = 0
    seconds: float = 0.0


class _Breaker:
    """Stops asking a server that failed `limit` requests in a row (after the client's own
    retries): the records not yet asked wait for review instead of each waiting out its
    retries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0
        self.lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self.lock:
            return self.failures >= self.limit

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.failures = self.failures + 1 if answer.status == UNAVAILABLE else 0


class LLMTier(Tier):
    """A language model asked, one prompt per record, through a `Labeler`; answers come from
    the warehouse's response cache where the same model was asked the same prompt before."""

    name = "heavy"
    slot = HEAVY

    def __init__(
        self,
        connect: Connect,
        spec: TaskSpec,
        labeler: Labeler,
        examples: Callable[[pd.Series], list[list[Example]]],
        *,
        may_accept: bool,
    ) -> None:
        super().__init__(labeler.version, may_accept=may_accept)
        assert spec.heavy is not None
        self.connect, self.spec, self.labeler, self.examples = connect, spec, labeler, examples
        self.answers: list[Answer] = []

    def predict_proba(self, batch: Batch, progress: Progress | None) -> np.ndarray:
        spec, labels = self.spec, self.spec.label_names
        texts = batch.texts
        shots = self.examples(batch.keys)
        prompts = [
            build_messages(spec.description, spec.labels, shots[i], str(text))
            for i, text in enumerate(texts.tolist())
        ]
        settings = self.labeler.answer_settings()
        model = self.labeler.version
        keys = [cache_key(model, messages, settings) for messages in prompts]
        answers: list[Answer | None] = list(self._cached(keys))
        misses = [i for i, a in enumerate(answers) if a is None]
        for i, answer in self._ask(prompts, keys, misses, progress):
            answers[i] = answer
        self.answers = [a for a in answers if a is not None]
        probs = np.full((len(batch), len(labels)), np.nan)
        index = {label: j for j, label in enumerate(labels)}
        for i, answer in enumerate(self.answers):
            if answer.label is not None:
                probs[i] = label_probabilities(index[answer.label], answer.confidence, len(labels))
        self.cost.tokens += sum(a.tokens_in + a.tokens_out for a in self.answers if not a.cached)
        return probs

    def _cached(self, keys: list[str]) -> list[Answer | None]:
        if not keys:
            return []
        with self.connect() as conn:
            conn.register("_want_keys", pd.DataFrame({"key": keys}))
            try:
                rows = conn.execute(
                    "SELECT c.key, c.label, c.confidence, c.status, c.detail, c.samples,"
                    " c.tokens_in, c.tokens_out"
                    f" FROM {q(self.spec.name, 'llm_responses')} c"
                    " WHERE c.key IN (SELECT key FROM _want_keys) AND c.model = ?",
                    [self.labeler.version],
                ).fetchall()
            finally:
                conn.unregister("_want_keys")
        found = {
            key: Answer(
                label,
                float("nan") if conf is None else float(conf),
                status,
                detail or "",
                int(t_in),
                int(t_out),
                cached=True,
                samples=list(samples or []),
            )
            for key, label, conf, status, detail, samples, t_in, t_out in rows
        }
        return [found.get(key) for key in keys]

    def _ask(
        self,
        prompts: list[list[dict[str, str]]],
        keys: list[str],
        rows: list[int],
        progress: Progress | None,
    ) -> list[tuple[int, Answer]]:
        """Asks the server about `rows` from `heavy.concurrency` threads; writes each valid or
        invalid answer to the response cache as it comes (failures are not cached, so a later
        run asks again)."""
        assert self.spec.heavy is not None
        settings = self.spec.heavy
        breaker = _Breaker(settings.concurrency + 2)
        done: list[tuple[int, Answer]] = []
        unsaved: list[tuple[str, Answer]] = []

        def ask(i: int) -> Answer:
            if breaker.open:
                return Answer(
                    None,
                    float("nan"),
                    UNAVAILABLE,
                    f"not sent: the server failed {breaker.limit} requests in a row",
                )
            try:
                answer = self.labeler.ask(prompts[i])
            except Exception as err:  # noqa: BLE001 - a labeler that fails (a local model
                # out of memory, say) leaves the record for review, as a server that fails
                answer = Answer(None, float("nan"), UNAVAILABLE, f"failed ({type(err).__name__})")
            breaker.record(answer)
            return answer

        if progress:
            progress("heavy tier", 0, len(rows))
        pool = ThreadPoolExecutor(max_workers=settings.concurrency)
        pending: dict[Future[Answer], int] = {}
        try:
            pending = {pool.submit(ask, i): i for i in rows}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = pending.pop(future)
                    answer = future.result()
                    done.append((i, answer))
                    if answer.status in (ANSWERED, INVALID_ANSWER) and answer.cacheable:
                        unsaved.append((keys[i], answer))
                if len(unsaved) >= CACHE_FLUSH_EVERY:
                    self._save(unsaved)
                    unsaved = []
                if progress:
                    progress("heavy tier", len(done), len(rows))
        finally:  # what was answered is kept, even when the stage is interrupted
            pool.shutdown(wait=True, cancel_futures=True)
            # answers that arrived while the interruption was raised (or in the same batch)
            for future, i in pending.items():
                if future.cancelled() or future.exception() is not None:
                    continue
                answer = future.result()
                if answer.status in (ANSWERED, INVALID_ANSWER) and answer.cacheable:
                    unsaved.append((keys[i], answer))
            self._save(unsaved)
        return done

    def _save(self, answers: list[tuple[str, Answer]]) -> None:
        if not answers:
            return
        frame = pd.DataFrame(
            {
                "key": [k for k, _ in answers],
                "model": self.labeler.version,
                "label": [a.label for _, a in answers],
                "confidence": [a.confidence for _, a in answers],
                "status": [a.status for _, a in answers],
                "detail": [a.detail for _, a in answers],
                "samples": [list(a.samples) for _, a in answers],
                "tokens_in": [a.tokens_in for _, a in answers],
                "tokens_out": [a.tokens_out for _, a in answers],
                "latency_s": [a.latency_s for _, a in answers],
                "created_at": pd.Timestamp.now(),
            }
        ).drop_duplicates("key")
        with self.connect() as conn, transaction(conn):
            conn.register("_new_answers", frame)
            try:
                fresh = conn.execute(
                    "SELECT * FROM _new_answers n WHERE NOT EXISTS (SELECT 1 FROM"
                    f" {q(self.spec.name, 'llm_responses')} c WHERE c.key = n.key)"
                ).fetchdf()
            finally:
                conn.unregister("_new_answers")
            append_rows(conn, self.spec.name, "llm_responses", fresh)


def _read_drop(conn: Any, spec: TaskSpec, drop_id: str) -> pd.DataFrame:
    task = spec.name
    return conn.execute(
        "SELECT m.record_id, m.dedup_key, m.label, m.confidence, m.source, m.accepted,"
        " m.model_version, m.model_label, m.model_confidence, r.rule_confidence,"
        " json_extract_string(n.meta, '$.file') AS file"
        f" FROM {q(task, 'model_labels')} m"
        f" JOIN {q(task, 'normalized_records')} n USING (drop_id, record_id)"
        f" LEFT JOIN {q(task, 'rule_labels')} r USING (drop_id, record_id)"
        " WHERE m.drop_id = ? ORDER BY n.row_num",
        [drop_id],
    ).fetchdf()


def _spec_examples(spec: TaskSpec, n: int) -> list[Example]:
    """Up to `n` of the spec's examples, taking the labels in turn."""
    queues = [[Example(t, label) for t in texts] for label, texts in spec.examples.items()]
    out: list[Example] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def _similar_examples(
    conn: Any, spec: TaskSpec, encoder: str | None, keys: pd.Series, k: int
) -> list[list[Example]]:
    """For each key, the `k` human-decided records whose cached sentence vectors (under
    `encoder`) are closest, most similar last (nearest the record); [] where the record or
    the decided records have no cached vector."""
    empty: list[list[Example]] = [[] for _ in range(len(keys))]
    if k == 0 or encoder is None or len(keys) == 0:
        return empty
    task = spec.name
    decided = decided_records(conn, spec)[["record_id", "label"]]
    if decided.empty:
        return empty
    with registered(conn, "_decided_heavy", decided):
        known = conn.execute(
            "SELECT any_value(n.text) AS text, n.dedup_key, any_value(d.label) AS label,"
            " any_value(e.vector) AS vector"
            f" FROM _decided_heavy d JOIN {q(task, 'normalized_records')} n USING (record_id)"
            f" JOIN {q(task, 'embeddings')} e ON e.dedup_key = n.dedup_key AND e.encoder = ?"
            " GROUP BY n.dedup_key ORDER BY n.dedup_key",
            [encoder],
        ).fetchdf()
    if known.empty:
        return empty
    wanted = pd.DataFrame({"dedup_key": keys.astype(str).to_numpy()})
    with registered(conn, "_heavy_keys", wanted):
        mine = conn.execute(
            f"SELECT e.dedup_key, any_value(e.vector) AS vector FROM {q(task, 'embeddings')} e"
            " WHERE e.encoder = ? AND e.dedup_key IN (SELECT dedup_key FROM _heavy_keys)"
            " GROUP BY e.dedup_key",
            [encoder],
        ).fetchdf()
    if mine.empty:
        return empty
    bank = _unit(np.stack(known["vector"].to_numpy()))
    vectors = dict(zip(mine["dedup_key"], mine["vector"], strict=True))
    out: list[list[Example]] = []
    for key in keys.astype(str).tolist():
        vector = vectors.get(key)
        if vector is None:
            out.append([])
            continue
        sims = bank @ _unit(np.asarray(vector, dtype=np.float32)[None, :])[0]
        # the record itself (decided already) is no example for itself
        sims[known["dedup_key"].to_numpy() == key] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        top = top[np.isfinite(sims[top])][::-1]
        out.append([Example(known["text"].iat[j], known["label"].iat[j]) for j in top])
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


def _encoder_of(conn: Any, task: str, versions: pd.Series) -> str | None:
    """The sentence encoder of the drop's encoder tier (its vectors are in the cache); the
    n-gram tier's versions name none."""
    names = pd.DataFrame({"version": versions.dropna().astype(str).unique()})
    if names.empty:
        return None
    conn.register("_heavy_versions", names)
    try:
        row = conn.execute(
            f"SELECT encoder FROM {q(task, 'model_versions')}"
            " WHERE version IN (SELECT version FROM _heavy_versions) AND kind <> 'ngram'"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchall()
    finally:
        conn.unregister("_heavy_versions")
    return str(row[0][0]) if row else None


def _calibration(conn: Any, spec: TaskSpec, version: str) -> AnswerCalibration:
    """The model's answers that people have since decided: raw confidence against whether
    the person agreed."""
    decided = decided_records(conn, spec)[["record_id", "label"]]
    if decided.empty:
        return fit_answer_calibration(np.array([]), np.array([]))
    conn.register("_decided_cal", decided)
    try:
        rows = conn.execute(
            "SELECT h.heavy_raw_confidence, (h.heavy_label = d.label)::DOUBLE"
            f" FROM {q(spec.name, 'heavy_labels')} h JOIN _decided_cal d USING (record_id)"
            " WHERE h.heavy_version = ? AND h.heavy_label IS NOT NULL",
            [version],
        ).fetchall()
    finally:
        conn.unregister("_decided_cal")
    raw = np.array([r[0] for r in rows], dtype=float)
    correct = np.array([r[1] for r in rows], dtype=float)
    return fit_answer_calibration(raw, correct)


def label_by_heavy(
    connect: Connect,
    spec: TaskSpec,
    drop_id: str,
    *,
    labeler: Labeler | None = None,
    scorer: HeavyScorer | None = None,
    model: str = "off",
    item_root: Path | None = None,
    progress: Progress | None = None,
) -> HeavyResult:
    """Asks the heavy tier (a language model through `labeler` for text tasks, a scorer over
    image files such as CLIP for image tasks) about the records no earlier stage accepted,
    and writes heavy_labels: every record of the drop with the heavy vote and the decision."""
    start = time.perf_counter()
    task, labels = spec.name, spec.label_names
    index = {label: i for i, label in enumerate(labels)}
    threshold = spec.thresholds.auto_accept
    with connect() as conn:
        frame = _read_drop(conn, spec, drop_id)
        previous = conn.execute(
            f"SELECT * FROM {q(task, 'heavy_labels')} WHERE drop_id = ?", [drop_id]
        ).fetchdf()
        decided = set(decided_records(conn, spec)["record_id"].astype(str))
        encoder = _encoder_of(conn, task, frame["model_version"])
    n = len(frame)
    tier: Tier | None = None
    if labeler is not None:
        tier = LLMTier(connect, spec, labeler, lambda keys: [], may_accept=False)
    elif scorer is not None:
        tier = HeavyTier(scorer, labels, images=spec.is_image)
    result = HeavyResult(n_records=n, model=model, version=tier.version if tier else None)

    waiting = (
        ~frame["accepted"].to_numpy(dtype=bool)
        & ~frame["record_id"].astype(str).isin(decided).to_numpy()
    )
    rows = np.flatnonzero(waiting) if tier is not None else np.array([], dtype=np.int64)
    cap = spec.heavy.max_records_per_drop if spec.heavy is not None else None
    status: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    if cap is not None and len(rows) > cap:
        for i in rows[cap:].tolist():
            status[i], detail[i] = NOT_SENT, f"over heavy.max_records_per_drop ({cap})"
        result.not_sent = len(rows) - cap
        rows = rows[:cap]

    h_label = np.full(n, NO_LABEL, dtype=np.int64)
    h_raw = np.full(n, np.nan)
    h_conf = np.full(n, np.nan)
    tokens_in = np.zeros(n, dtype=np.int64)
    tokens_out = np.zeros(n, dtype=np.int64)
    cost = np.zeros(n)
    may_accept = True
    root = item_root or Path(".")

    def files_at() -> list[str | None]:
        named = frame["file"].iloc[rows].tolist()
        return [str(root / f) if isinstance(f, str) and f != "" else None for f in named]

    def texts_at() -> pd.Series:
        with connect() as conn:
            found = drop_texts(
                conn, task, drop_id, frame["record_id"].iloc[rows].astype(str).tolist()
            )
        return pd.Series(found, index=rows)

    if isinstance(tier, LLMTier):
        assert spec.heavy is not None
        with connect() as conn:
            calibration = _calibration(conn, spec, tier.version)
        trusted = calibration.n_reviewed >= spec.heavy.min_reviewed
        may_accept = trusted or spec.heavy.accept_unreviewed
        tier.may_accept = may_accept
        result.may_accept = may_accept
        result.calibration = calibration.metrics() | {
            "min_reviewed": spec.heavy.min_reviewed,
            "calibrated": trusted,
        }
        fixed = _spec_examples(spec, spec.heavy.few_shot)
        k = spec.heavy.similar_examples

        def examples(keys: pd.Series) -> list[list[Example]]:
            with connect() as conn:
                similar = _similar_examples(conn, spec, encoder, keys, k)
            return [fixed + s for s in similar]

        tier.examples = examples
        if len(rows):
            tier.score(Batch(frame["dedup_key"].iloc[rows], texts_at, files_at), progress)
        latencies = []
        prices = spec.heavy
        for i, answer in zip(rows.tolist(), tier.answers, strict=True):
            status[i] = answer.status
            detail[i] = answer.detail or None
            tokens_in[i], tokens_out[i] = answer.tokens_in, answer.tokens_out
            if answer.label is not None:
                h_label[i] = index[answer.label]
                h_raw[i] = answer.confidence
            if answer.cached:
                result.cache_hits += 1
            else:
                latencies.append(answer.latency_s)
                cost[i] = (
                    answer.tokens_in * prices.price_per_input_token
                    + answer.tokens_out * prices.price_per_output_token
                )
                result.tokens_in += answer.tokens_in
                result.tokens_out += answer.tokens_out
        h_conf = calibration(h_raw) if trusted else h_raw.copy()
        if latencies:
            result.latency_p50_s = float(np.percentile(latencies, 50))
            result.latency_p95_s = float(np.percentile(latencies, 95))
    elif tier is not None and len(rows):
        probs = tier.score(Batch(frame["dedup_key"].iloc[rows], texts_at, files_at), progress)
        for j, i in enumerate(rows.tolist()):
            if np.isnan(probs[j]).all():
                status[i], detail[i] = UNAVAILABLE, "no image file to score"
                continue
            status[i] = ANSWERED
            h_label[i] = int(probs[j].argmax())
            h_raw[i] = h_conf[i] = float(probs[j].max())
    result.sent = len(rows)
    result.answered = int((h_label != NO_LABEL).sum())
    result.invalid_answers = sum(s == INVALID_ANSWER for s in status)
    result.unavailable = sum(s == UNAVAILABLE for s in status)
    result.cost = float(cost.sum())

    routed = _decide(frame, spec, h_label, h_conf, may_accept=may_accept, heavy_on=tier is not None)
    out = pd.DataFrame(
        {
            "drop_id": drop_id,
            "record_id": frame["record_id"],
            "dedup_key": frame["dedup_key"],
            "heavy_label": [labels[i] if i != NO_LABEL else None for i in h_label],
            "heavy_confidence": np.round(h_conf, 6),
            "heavy_raw_confidence": np.round(h_raw, 6),
            "heavy_version": [result.version if s is not None else None for s in status],
            "heavy_status": status,
            "heavy_detail": detail,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost": cost,
            "model_version": frame["model_version"],
            "label": [labels[i] if i != NO_LABEL else None for i in routed.label_index],
            "confidence": routed.confidence,
            "source": [s or None for s in routed.source],
            "accepted": routed.accepted,
        }
    )
    _keep_unasked_votes(out, previous, status)
    if tier is not None and may_accept:  # a gate closed since (or no tier) keeps nothing
        out, result.kept_earlier = keep_earlier_acceptances(out, previous, threshold, ("heavy",))
    with connect() as conn, transaction(conn):
        replace_rows(conn, task, "heavy_labels", drop_id, out)
    result.accepted = int((out["accepted"] & (out["source"] == "heavy")).sum())
    accepted = out.loc[out["accepted"], "source"].value_counts().to_dict()
    result.accepted_by_source = {str(k): int(v) for k, v in accepted.items()}
    result.pending = int((~out["accepted"]).sum())
    result.seconds = time.perf_counter() - start
    return result


HEAVY_VOTE = (
    "heavy_label",
    "heavy_confidence",
    "heavy_raw_confidence",
    "heavy_version",
    "heavy_status",
    "heavy_detail",
    "tokens_in",
    "tokens_out",
)


def _keep_unasked_votes(
    out: pd.DataFrame, previous: pd.DataFrame, status: list[str | None]
) -> None:
    """A record not asked this time (accepted earlier, or decided by a person since) keeps the
    heavy vote an earlier run gave it for the same text: decided records' votes are what
    calibration is fitted on, and a re-score must not erase them. Its cost was paid then."""
    if previous.empty:
        return
    unasked = np.array([s is None for s in status], dtype=bool)
    earlier = previous[previous["heavy_status"].notna()].set_index("record_id")
    rows = np.flatnonzero(unasked & out["record_id"].isin(earlier.index).to_numpy())
    if not len(rows):
        return
    ids = out["record_id"].iloc[rows]
    same = earlier.loc[ids, "dedup_key"].to_numpy() == out["dedup_key"].iloc[rows].to_numpy()
    rows, ids = rows[same], ids[same]
    for column in HEAVY_VOTE:
        out.loc[out.index[rows], column] = earlier.loc[ids, column].to_numpy()
    for column in ("tokens_in", "tokens_out"):
        out[column] = pd.to_numeric(out[column]).fillna(0).astype("int64")


def _decide(
    frame: pd.DataFrame,
    spec: TaskSpec,
    h_label: np.ndarray,
    h_conf: np.ndarray,
    *,
    may_accept: bool,
    heavy_on: bool,
) -> Routed:
    """The decision after the heavy tier: earlier acceptances stand; a waiting record takes
    the heavy label when it clears the threshold (and the tier may accept), else keeps the
    more confident suggestion. Image tasks then route records every stage scored low to the
    unknown label (images.unknown_label)."""
    labels = spec.label_names
    index = {label: i for i, label in enumerate(labels)}
    threshold = spec.thresholds.auto_accept
    label = frame["label"].map(index).fillna(NO_LABEL).to_numpy(dtype=np.int64)
    conf = frame["confidence"].fillna(0.0).to_numpy(dtype=np.float64)
    source = frame["source"].fillna("").to_numpy(dtype=object).copy()
    accepted = frame["accepted"].to_numpy(dtype=bool).copy()
    has = (h_label != NO_LABEL) & ~np.isnan(h_conf)
    sure = has & ~accepted & (np.nan_to_num(h_conf) >= threshold) & may_accept
    better = has & ~accepted & ~sure & (np.nan_to_num(h_conf) > conf)
    for mask in (sure, better):
        label[mask] = h_label[mask]
        conf[mask] = h_conf[mask]
        source[mask] = "heavy"
    accepted |= sure
    routed = Routed(label, conf, source, accepted)
    if spec.images.unknown_label is None:
        return routed
    model_idx = frame["model_label"].map(index).fillna(NO_LABEL).to_numpy(dtype=np.int64)
    stages = [
        StageVotes("rule", label, frame["rule_confidence"].to_numpy(dtype=np.float64)),
        StageVotes(
            IMAGE_TEXT_SOURCE if spec.is_image else "model",
            model_idx,
            frame["model_confidence"].to_numpy(dtype=np.float64),
        ),
    ]
    if heavy_on:
        stages.append(StageVotes("heavy", h_label, h_conf))
    return route_unknown(routed, stages, spec, index[spec.images.unknown_label])
