"""Throughput, peak memory and scaling of one drop through the whole pipeline, with baselines.

    .venv/bin/python bench/bench_pipeline.py [--sizes 10000 100000] [--encoder PATH] [--out DIR]

Each size runs in a fresh child process of this script (`--one SIZE`), so its peak RSS is its
own. The child writes SIZE synthetic reviews (jsonl, a few broken lines, the default duplicate
rates) into a temporary home, builds the `product_reviews` task of tasks/product_reviews.yaml
on a temporary DuckDB warehouse, and times each stage function of
annotation_assets/stages/ in order. Then, on the same data and in the same process, it
times the baselines:

- ingest: a plain `for line in open(path): json.loads(line)` pass over the drop's files;
- rules:  the task's rules applied per row with pandas `Series.apply` of Python functions
          (`re.search` with Python translations of the patterns, VADER once per row for the
          lexicon rules), the way Snorkel's PandasLFApplier labels a DataFrame;
- model:  the bare encoder forward pass (`TextEncoder.encode`) on exactly the texts the model
          stage scored, at the same batch size, so the ratio is the stage's own overhead
          (warehouse reads/writes, embedding cache, head training, routing).

The child prints one JSON line on stdout; the parent prints a table per size, a scaling line
(largest size against smallest), and writes every figure as JSON into --out. Ratios are ours
divided by the baseline, in records/s: above 1 we are faster, below 1 slower. Figures only;
nothing is asserted. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

SPEC_PATH = ROOT / "tasks" / "product_reviews.yaml"
DEFAULT_OUT = ROOT / "bench" / "out"
DEFAULT_SIZES = (10_000, 100_000)
BROKEN_PER_MILLE = 2  # malformed jsonl lines per 1,000 records
RESULT_MARK = "bench_pipeline"
STAGES = (
    "ingest_drop",
    "normalize_drop",
    "label_by_rules",
    "label_by_model",
    "queue_for_review",
    "build_final_dataset",
)


def _log(size: int, message: str) -> None:
    print(f"[bench {size:,}] {message}", file=sys.stderr, flush=True)


def _peak_rss_mib() -> float:
    """This process's peak resident set size since the last `_reset_peak_rss` (Linux: VmHWM),
    else since it started (ru_maxrss is KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _reset_peak_rss() -> bool:
    """Restarts the peak RSS from the current RSS (Linux), so writing the synthetic drop does
    not count as the pipeline's memory; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------- baselines


def _baseline_json_lines(files: list[Path]) -> tuple[int, int]:
    """Lines read and lines that failed to parse, with nothing but `json.loads` per line."""
    lines = bad = 0
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                lines += 1
                try:
                    json.loads(line)
                except ValueError:
                    bad += 1
    return lines, bad


def python_keywords_pattern(words: list[str]) -> str:
    """The Python `re` equivalent of rules.keywords_pattern: same alternation (longest first),
    `\\b` word boundaries instead of RE2's `(?:^|[^\\pL\\pN_])` edges."""
    alts = sorted({r"\s+".join(re.escape(w) for w in word.split()) for word in words}, key=len)
    return r"(?i)\b(?:" + "|".join(reversed(alts)) + r")\b"


def _python_labeling_functions(spec: Any) -> tuple[list[str], list[str], Callable[[str], tuple]]:
    """The spec's rules as one per-row Python function returning the rule votes of a text
    (label index or -1 per rule), VADER computed at most once per row (as a memoized Snorkel
    preprocessor would). Returns rule names, rule fields and the function."""
    import vader

    from annotation_assets.core.spec import KeywordsRule, LexiconSentimentRule, RegexRule

    analyzer = vader.SentimentIntensityAnalyzer()
    index = {label: i for i, label in enumerate(spec.label_names)}
    checks: list[tuple[str, Any, int]] = []
    for rule in spec.rules:
        if isinstance(rule, RegexRule):
            checks.append(("re", re.compile(rule.pattern), index[rule.label]))
        elif isinstance(rule, KeywordsRule):
            checks.append(
                ("re", re.compile(python_keywords_pattern(rule.words)), index[rule.label])
            )
        elif isinstance(rule, LexiconSentimentRule):
            checks.append(("vader", (rule.min, rule.max), index[rule.label]))
        else:  # pragma: no cover - a rule type this benchmark does not know yet
            raise TypeError(f"no Python baseline for rule type {type(rule).__name__}")

    def votes(text: str) -> tuple[int, ...]:
        compound: float | None = None
        out = []
        for kind, arg, label in checks:
            if not isinstance(text, str) or not text:
                out.append(-1)
            elif kind == "re":
                out.append(label if arg.search(text) is not None else -1)
            else:
                if compound is None:
                    compound = analyzer.polarity_scores(text)["compound"]
                out.append(label if arg[0] <= compound <= arg[1] else -1)
        return tuple(out)

    return [r.name for r in spec.rules], [r.field for r in spec.rules], votes


# ------------------------------------------------------------------------------------- child


def run_one(
    size: int, encoder_path: str | None, seed: int, baseline_sample: int | None = None
) -> dict[str, Any]:
    """Everything measured for one size, in this process."""
    import numpy as np

    from annotation_assets.core.encoder import bundled_encoder_path, load_encoder
    from annotation_assets.core.model_store import ModelStore
    from annotation_assets.core.spec import load_task_spec
    from annotation_assets.progress import ProgressReporter
    from annotation_assets.stages.dataset import build_final_dataset
    from annotation_assets.stages.ingest import ingest_drop
    from annotation_assets.stages.model import label_by_model
    from annotation_assets.stages.normalize import normalize_drop
    from annotation_assets.stages.review import queue_for_review
    from annotation_assets.stages.rules import label_by_rules
    from annotation_assets.warehouse.counts import drop_counts
    from resources.warehouse import Warehouse
    from tools.synthetic import iter_reviews, write_drop

    child_start = time.perf_counter()
    load_start = os.getloadavg()
    spec = load_task_spec(SPEC_PATH)
    # one drop and no reviewers: let the n-gram tier accept as it does once a deployment has
    # its first human decisions (model.fast_tier_min_reviewed, default 30), so the bench
    # measures the warmed-up cascade rather than the first drop's
    spec = spec.model_copy(
        update={"model": spec.model.model_copy(update={"fast_tier_min_reviewed": 0})}
    )
    task = spec.name
    drop_id = f"bench-{size}"
    broken = max(1, size * BROKEN_PER_MILLE // 1000)
    encoder_dir = encoder_path or str(bundled_encoder_path())

    def reporter() -> ProgressReporter:
        # One reporter per stage, as the Dagster assets make: ProgressReporter times a stage
        # from its creation (first stage) or from its first report (later stages).
        return ProgressReporter(lambda line: _log(size, line), interval_s=10.0)

    result: dict[str, Any] = {
        "mark": RESULT_MARK,
        "size": size,
        "seed": seed,
        "broken_lines": broken,
        "task": task,
        "encoder_path": encoder_dir,
        "batch_size": spec.model.batch_size,
        "max_length": spec.model.max_length,
        "encoder_precision": spec.model.encoder_precision,
        "load_average_start": load_start,
    }
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        home = Path(tmp)
        drop_dir = home / "drops" / task / drop_id

        _log(size, f"writing {size:,} reviews + {broken} broken lines to {drop_dir}")
        t0 = time.perf_counter()
        stream = (r for chunk in iter_reviews(size, seed=seed) for r in chunk)
        files = write_drop(drop_dir, stream, fmt="jsonl", broken_lines=broken, seed=seed)
        result["generate_s"] = time.perf_counter() - t0
        result["generate_peak_rss_mib"] = _peak_rss_mib()
        result["peak_rss_reset_after_generate"] = _reset_peak_rss()
        result["drop_bytes"] = sum(p.stat().st_size for p in files)

        warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
        warehouse.ensure_task(task)
        connect = warehouse.connect
        store = ModelStore(home / "models" / task)

        _log(size, f"loading encoder {encoder_dir}")
        t0 = time.perf_counter()
        encoder = load_encoder(
            encoder_dir,
            spec.model.max_length,
            spec.model.batch_size,
            spec.model.encoder_precision,
        )
        encoder.encode(["warm-up sentence, not part of the drop"] * 4)
        result["encoder_load_s"] = time.perf_counter() - t0
        result["encoder"] = encoder.name
        result["encoder_precision_used"] = encoder.precision  # what "auto" resolved to

        stages: dict[str, dict[str, Any]] = {}

        def timed(name: str, call: Callable[[], Any]) -> Any:
            _log(size, f"{name} ...")
            start = time.perf_counter()
            value = call()
            seconds = time.perf_counter() - start
            stages[name] = {"seconds": seconds, "peak_rss_mib_after": _peak_rss_mib()}
            _log(size, f"{name}: {seconds:,.2f} s, peak RSS {_peak_rss_mib():,.0f} MiB")
            return value

        ingest = timed(
            "ingest_drop",
            lambda: ingest_drop(connect, spec, drop_id, drop_dir, progress=reporter()),
        )
        norm = timed(
            "normalize_drop",
            lambda: normalize_drop(connect, spec, drop_id, progress=reporter()),
        )
        rules = timed("label_by_rules", lambda: label_by_rules(connect, spec, drop_id))
        model = timed(
            "label_by_model",
            lambda: label_by_model(
                connect, spec, drop_id, encoder=encoder, store=store, progress=reporter()
            ),
        )
        pending = timed("queue_for_review", lambda: queue_for_review(connect, spec, drop_id))
        final = timed("build_final_dataset", lambda: build_final_dataset(connect, spec, drop_id))
        result["pipeline_peak_rss_mib"] = _peak_rss_mib()

        records = {
            "ingest_drop": ingest.ingested,
            "normalize_drop": ingest.ingested,
            "label_by_rules": norm.normalized,
            "label_by_model": norm.normalized,
            "queue_for_review": norm.normalized,
            "build_final_dataset": norm.normalized,
        }
        for name, stage in stages.items():
            stage["records"] = records[name]
            stage["records_per_s"] = records[name] / stage["seconds"] if stage["seconds"] else None
        stages["label_by_model"].update(
            model_kind=model.model_kind,
            model_scored=model.n_scored,
            newly_encoded=model.n_encoded,
            model_scored_per_s=model.n_scored / stages["label_by_model"]["seconds"],
            fast_version=model.fast_version,
            tiers=model.tiers,
            tier_seconds=model.seconds,
        )
        result["tiers"] = _tier_rows(rules.n_records, stages, model.tiers, model.seconds)
        result["stages"] = stages
        result["pipeline_s"] = sum(s["seconds"] for s in stages.values())
        result["ingest"] = {"ingested": ingest.ingested, "parse_errors": ingest.parse_errors}
        result["normalize"] = {
            "normalized": norm.normalized,
            "quarantined": norm.quarantined,
            "duplicates": norm.duplicates,
        }
        result["rules"] = {
            "n_labeled": rules.n_labeled,
            "n_conflicts": rules.n_conflicts,
            "fired": {row["rule"]: row["fired"] for row in rules.summary},
        }
        result["model"] = {
            "version": model.model_version,
            "kind": model.model_kind,
            "accepted": model.accepted,
            "pending": model.pending,
        }
        result["review"] = {"pending": pending.n_pending, "by_reason": pending.by_reason}
        result["final"] = {"rows": final.n_rows, "by_source": final.by_source}

        with connect() as conn:
            counts = drop_counts(conn, task, drop_id)
            trained = conn.execute(
                f'SELECT n_train FROM "{task}".model_versions WHERE version = ?',
                [model.model_version],
            ).fetchone()
            rule_frame = conn.execute(
                f'SELECT n.record_id, n.text, r.rules_fired FROM "{task}".normalized_records n'
                f' LEFT JOIN "{task}".rule_labels r USING (drop_id, record_id)'
                " WHERE n.drop_id = ? ORDER BY n.row_num",
                [drop_id],
            ).fetchdf()
            scored_texts = [
                row[0]
                for row in conn.execute(
                    f'SELECT n.text FROM "{task}".normalized_records n'
                    f' JOIN "{task}".model_labels m USING (drop_id, record_id)'
                    " WHERE n.drop_id = ? AND m.model_version = ? ORDER BY n.row_num",
                    [drop_id, model.model_version],
                ).fetchall()
            ]
        accounted = (
            counts["final_rows"]
            + counts["hitl_pending"]
            + counts["quarantined"]
            + counts["duplicates"]
        )
        result["conservation"] = {**counts, "accounted": accounted}
        stages["label_by_model"]["train_texts"] = int(trained[0]) if trained else None

        # ---- baselines, same process, same data
        baselines: dict[str, dict[str, Any]] = {}

        _log(size, "baseline ingest: json.loads per line ...")
        start = time.perf_counter()
        lines, bad = _baseline_json_lines(files)
        seconds = time.perf_counter() - start
        baselines["ingest_drop"] = {
            "what": "for line in open(f): json.loads(line)",
            "seconds": seconds,
            "records": lines,
            "parse_errors": bad,
            "records_per_s": lines / seconds if seconds else None,
        }

        _log(size, f"baseline rules: Series.apply over {len(rule_frame):,} rows ...")
        names, fields, votes = _python_labeling_functions(spec)
        if any(f != "text" for f in fields):
            raise NotImplementedError("the rules baseline reads only the text field")
        texts = rule_frame["text"]
        start = time.perf_counter()
        applied = texts.apply(votes)
        matrix = np.array(applied.tolist(), dtype=np.int16).reshape(len(texts), len(names))
        seconds = time.perf_counter() - start
        ours_fired = [
            frozenset(x) if x is not None else frozenset() for x in rule_frame["rules_fired"]
        ]
        base_fired = [
            frozenset(n for n, v in zip(names, row, strict=True) if v >= 0) for row in matrix
        ]
        mismatched = sum(a != b for a, b in zip(ours_fired, base_fired, strict=True))
        per_rule = {
            name: int(
                sum((name in a) != (name in b) for a, b in zip(ours_fired, base_fired, strict=True))
            )
            for name in names
        }
        baselines["label_by_rules"] = {
            "what": "pandas Series.apply, Python re + VADER per row (PandasLFApplier-style)",
            "seconds": seconds,
            "records": len(texts),
            "records_per_s": len(texts) / seconds if seconds else None,
            "records_disagreeing_with_stage": mismatched,
            "disagreements_per_rule": per_rule,
        }

        if baseline_sample is not None and len(scored_texts) > baseline_sample:
            # a seeded sample of the same texts, for large sizes: re-encoding every text the
            # encoder tier scored would double the run's time
            pick = np.sort(
                np.random.default_rng(seed).choice(
                    len(scored_texts), baseline_sample, replace=False
                )
            )
            scored_texts = [scored_texts[i] for i in pick]
            sampled = f", a random {baseline_sample:,} of them"
        else:
            sampled = ""
        _log(size, f"baseline model: TextEncoder.encode on {len(scored_texts):,} scored texts ...")

        encode_report = reporter()

        def encode_progress(done: int, total: int) -> None:
            encode_report("baseline encode", done, total)

        start = time.perf_counter()
        encoder.encode(scored_texts, progress=encode_progress)
        seconds = time.perf_counter() - start
        baselines["label_by_model"] = {
            "what": (
                f"TextEncoder.encode, batch {encoder.batch_size}, {encoder.precision},"
                f" same texts{sampled}"
            ),
            "seconds": seconds,
            "records": len(scored_texts),
            "records_per_s": len(scored_texts) / seconds if seconds else None,
        }
        result["baselines"] = baselines
    result["peak_rss_mib"] = _peak_rss_mib()
    result["child_wall_s"] = time.perf_counter() - child_start
    result["load_average_end"] = os.getloadavg()
    return result


def _tier_rows(
    n_records: int,
    stages: dict[str, dict[str, Any]],
    tiers: dict[str, int],
    seconds: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per cascade tier: records it scored, records it settled (their share of the
    normalized records) and its own wall seconds. The rules tier's time is the rules stage;
    the encoder tier's is encoding + scoring the records left to it (the head's training, with
    its training-set encoding, is the `train` row)."""
    settled_by = {"rules": tiers.get("rules", 0), "ngram": tiers.get("ngram_settled", 0)}
    rows = [
        ("rules", n_records, settled_by["rules"], stages["label_by_rules"]["seconds"]),
        ("ngram tier", tiers.get("ngram_scored", 0), settled_by["ngram"], seconds.get("ngram")),
        (
            "encoder + head",
            tiers.get("encoder_scored", 0),
            None,
            seconds.get("encoder"),
        ),
        ("heavy", tiers.get("heavy_scored", 0), None, seconds.get("heavy")),
        (
            "train (head+ngram)",
            None,
            None,
            seconds.get("train_encoder_head", 0.0) + seconds.get("train_ngram", 0.0),
        ),
        ("route + write", None, None, seconds.get("route_and_write")),
    ]
    out = []
    for name, scored, settled, secs in rows:
        out.append(
            {
                "tier": name,
                "scored": scored,
                "settled": settled,
                "share_settled": settled / n_records if settled is not None and n_records else None,
                "share_scored": scored / n_records if scored is not None and n_records else None,
                "seconds": secs,
                "records_per_s": scored / secs if scored and secs else None,
            }
        )
    return out


# ------------------------------------------------------------------------------------ parent


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _count(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _load(x: list[float] | None) -> str:
    return "?" if not x else "/".join(f"{v:.1f}" for v in x)


def _ratio(ours: float | None, base: float | None) -> str:
    return "-" if not ours or not base else f"{ours / base:.2f}x"


def format_table(r: dict[str, Any]) -> str:
    c = r["conservation"]
    stages, base = r["stages"], r["baselines"]
    lines = [
        f"== size {r['size']:,}: {c['ingested']:,} rows ingested ({r['broken_lines']} broken"
        f" lines written), {r['normalize']['normalized']:,} normalized; encoder {r['encoder']},"
        f" batch {r['batch_size']} ==",
        f"{'stage':<22}{'seconds':>9}{'records':>10}{'rec/s':>10}{'baseline/s':>12}"
        f"{'ratio':>8}  baseline",
    ]
    for name in STAGES:
        s = stages[name]
        b = base.get(name)
        if name == "label_by_model":
            # The stage's figure per normalized record has no baseline; the model-scored
            # figure below is the comparable one.
            b = None
        lines.append(
            f"{name:<22}{s['seconds']:>9.2f}{s['records']:>10,}{_rate(s['records_per_s']):>10}"
            f"{_rate(b['records_per_s'] if b else None):>12}"
            f"{_ratio(s['records_per_s'], b['records_per_s'] if b else None):>8}"
            f"  {b['what'] if b else ''}"
        )
        if name == "label_by_model":
            mb = base["label_by_model"]
            enc = next(t for t in r["tiers"] if t["tier"] == "encoder + head")
            lines.append(
                f"{'  encoder tier':<22}{enc['seconds'] or 0.0:>9.2f}{enc['scored']:>10,}"
                f"{_rate(enc['records_per_s']):>10}{_rate(mb['records_per_s']):>12}"
                f"{_ratio(enc['records_per_s'], mb['records_per_s']):>8}  {mb['what']}"
                f" ({mb['seconds']:.2f} s)"
            )
    lines.append(
        f"{'total (6 stages)':<22}{r['pipeline_s']:>9.2f}{c['ingested']:>10,}"
        f"{_rate(c['ingested'] / r['pipeline_s']):>10}"
    )
    n = r["normalize"]["normalized"]
    lines += [
        "cascade tiers (share of the normalized records; rec/s = records scored per second of"
        " the tier's own wall time)",
        f"{'tier':<22}{'scored':>10}{'share':>8}{'settled':>10}{'share':>8}{'seconds':>9}"
        f"{'rec/s':>10}",
    ]
    for t in r["tiers"]:
        lines.append(
            f"{t['tier']:<22}{_count(t['scored']):>10}{_share(t['share_scored']):>8}"
            f"{_count(t['settled']):>10}{_share(t['share_settled']):>8}"
            f"{t['seconds'] if t['seconds'] is not None else 0.0:>9.2f}"
            f"{_rate(t['records_per_s']):>10}"
        )
    pending = c["hitl_pending"]
    lines.append(
        f"{'left for review':<22}{'':>10}{'':>8}{pending:>10,}"
        f"{_share(pending / n if n else None):>8}"
    )
    ms = stages["label_by_model"]
    rb = base["label_by_rules"]
    ib = base["ingest_drop"]
    ok = "ok" if c["accounted"] == c["ingested"] else "MISMATCH"
    lines += [
        f"model stage: encoder head {ms['model_kind']} and n-gram tier"
        f" {ms.get('fast_version') or 'off'} trained on {ms['train_texts']} texts; the small"
        f" models scored {ms['model_scored']:,} of {ms['records']:,} records;"
        f" {ms['newly_encoded']:,} texts newly encoded (training set included)",
        f"rules baseline disagrees with the stage on {rb['records_disagreeing_with_stage']:,}"
        f" records {rb['disagreements_per_rule']}; ingest baseline read {ib['records']:,}"
        f" lines, {ib['parse_errors']} unparsable",
        f"peak RSS: {r['pipeline_peak_rss_mib']:,.0f} MiB after the stages (counted from"
        f" after writing the drop, which peaked at {r.get('generate_peak_rss_mib', 0):,.0f} MiB),"
        f" {r['peak_rss_mib']:,.0f} MiB with baselines; generate {r['generate_s']:.1f} s,"
        f" encoder load {r['encoder_load_s']:.1f} s, child wall {r['child_wall_s']:.1f} s;"
        f" load average {_load(r.get('load_average_start'))} at the start,"
        f" {_load(r.get('load_average_end'))} at the end (2 cores, shared machine)",
        f"conservation: ingested {c['ingested']:,} = final {c['final_rows']:,} (auto"
        f" {c['auto_accepted']:,}) + pending {c['hitl_pending']:,} + quarantined"
        f" {c['quarantined']:,} + duplicates {c['duplicates']:,} = {c['accounted']:,}: {ok};"
        f" by source {c['by_source']}",
    ]
    return "\n".join(lines)


def scaling(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    if len(results) < 2:
        return None
    small = min(results, key=lambda r: r["size"])
    big = max(results, key=lambda r: r["size"])
    if small["size"] == big["size"]:
        return None
    return {
        "small": small["size"],
        "big": big["size"],
        "size_ratio": big["size"] / small["size"],
        "time_ratio": big["pipeline_s"] / small["pipeline_s"],
        "rss_ratio": big["pipeline_peak_rss_mib"] / small["pipeline_peak_rss_mib"],
        "stage_time_ratio": {
            name: big["stages"][name]["seconds"] / small["stages"][name]["seconds"]
            for name in STAGES
        },
    }


TARGET_WALL_S = 15 * 60  # issue 6: 1M records in at most 15 minutes
TARGET_RSS_MIB = 4 * 1024  # and at most 4 GiB peak RSS
TARGET_TIME_RATIO = 11.0  # time at 1M / time at 100k
TARGET_RSS_RATIO = 1.5  # peak RSS at 1M / at 100k


def target_lines(results: list[dict[str, Any]], scale: dict[str, Any] | None) -> list[str]:
    """Issue 6's targets for the largest size run, each met or missed."""
    if not results:
        return []
    big = max(results, key=lambda r: r["size"])

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        f"target {big['size']:,} records in <= {TARGET_WALL_S / 60:.0f} min: pipeline"
        f" {big['pipeline_s'] / 60:.1f} min, {verdict(big['pipeline_s'] <= TARGET_WALL_S)}",
        f"target peak RSS <= {TARGET_RSS_MIB / 1024:.0f} GiB: {big['pipeline_peak_rss_mib']:,.0f}"
        f" MiB, {verdict(big['pipeline_peak_rss_mib'] <= TARGET_RSS_MIB)}",
    ]
    if scale:
        lines += [
            f"target time x{scale['size_ratio']:.3g} records <= x{TARGET_TIME_RATIO:g}:"
            f" x{scale['time_ratio']:.2f}, {verdict(scale['time_ratio'] <= TARGET_TIME_RATIO)}",
            f"target peak RSS ratio <= x{TARGET_RSS_RATIO:g}: x{scale['rss_ratio']:.2f},"
            f" {verdict(scale['rss_ratio'] <= TARGET_RSS_RATIO)}",
        ]
    if big["size"] != 1_000_000:
        lines.insert(
            0, f"(targets are for 1,000,000 records; the largest size here: {big['size']:,})"
        )
    return lines


def run_child(size: int, args: argparse.Namespace) -> dict[str, Any] | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(size)]
    cmd += ["--seed", str(args.seed)]
    if args.encoder_baseline_sample is not None:
        cmd += ["--encoder-baseline-sample", str(args.encoder_baseline_sample)]
    if args.encoder:
        cmd += ["--encoder", str(Path(args.encoder).resolve())]
    data, status = harness.run_child(
        Path(cmd[1]),
        cmd[2:],
        RESULT_MARK,
        lambda line: print(f"[bench] size {size:,}: {line}", file=sys.stderr, flush=True),
    )
    if data is None:
        print(f"size {size:,}: the child failed (exit {status}), no result", flush=True)
    return data


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--encoder", help="a local transformers folder (default: bundled MiniLM)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--encoder-baseline-sample",
        type=_positive_int,
        help="encode at most this many of the encoder tier's texts (a seeded random sample) for"
        " the model baseline (default: all of them)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one is not None:
        real_stdout = sys.stdout
        sys.stdout = sys.stderr  # keep stray library prints off the result line
        try:
            data = run_one(args.one, args.encoder, args.seed, args.encoder_baseline_sample)
        finally:
            sys.stdout = real_stdout
        print(json.dumps(data, default=float), flush=True)
        return 0

    started = datetime.now(UTC)
    results = []
    for size in args.sizes:
        child = run_child(size, args)
        if child is not None:
            results.append(child)
            print(format_table(child) + "\n", flush=True)
    scale = scaling(results)
    if scale:
        per_stage = ", ".join(f"{k} x{v:.1f}" for k, v in scale["stage_time_ratio"].items())
        print(
            f"scaling {scale['small']:,} -> {scale['big']:,} records (x{scale['size_ratio']:.3g}):"
            f" time (6 stages) x{scale['time_ratio']:.2f}, peak RSS (after the stages)"
            f" x{scale['rss_ratio']:.2f}"
            f" (per stage: {per_stage})",
            flush=True,
        )
    for line in target_lines(results, scale):
        print(line, flush=True)
    path = harness.write_report(
        args.out, RESULT_MARK, started, {"sizes": args.sizes, "results": results, "scaling": scale}
    )
    print(f"results written to {path}", flush=True)
    return 0 if len(results) == len(args.sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
