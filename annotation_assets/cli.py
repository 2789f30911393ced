"""`annotate`: run tasks over drops, export datasets, review, and inspect a home."""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotation_assets.core.s3 import S3Error
from annotation_assets.core.spec import SpecError, TaskSpec
from annotation_assets.home import PROJECT_ROOT, HomeConfigError, resolve_home, resolve_tasks_dir
from annotation_assets.runner import Runner, UsageError

if TYPE_CHECKING:
    import duckdb

DEMO_DROPS = Path(__file__).resolve().parent / "demo_data" / "drops"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annotate",
        description="Turn scrape drops into labeled datasets (rules, models, people).",
    )
    parser.add_argument(
        "--home", help="state folder (default $ANNOTATION_HOME or ./annotation_home)"
    )
    parser.add_argument(
        "--tasks", help="task specs folder (default $ANNOTATION_TASKS or the project's tasks/)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Dagster's run logs and tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("demo", help="run the bundled demo drops and print a summary")

    run = sub.add_parser("run", help="run every stage of TASK for one drop")
    run.add_argument("task")
    run.add_argument(
        "--drop",
        required=True,
        help="drop folder or s3://bucket/prefix/<drop_id>/; its name is the drop id",
    )

    export = sub.add_parser("export", help="write TASK's final dataset to a folder")
    export.add_argument("task")
    export.add_argument(
        "--out",
        help="output folder or s3://bucket/prefix/ (default: the spec's sink)",
    )
    export.add_argument(
        "--balance",
        choices=["none", "downsample", "stratified"],
        help="even out classes (default: the spec's balance.mode, usually none)",
    )

    status = sub.add_parser("status", help="per-drop counts of one or every task")
    status.add_argument("task", nargs="?")

    review = sub.add_parser("review", help="export the review queue / import human decisions")
    rsub = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    rexport = rsub.add_parser("export", help="write the records waiting for a decision")
    rexport.add_argument("task")
    rexport.add_argument("--out", required=True, help="output file (.json or .csv)")
    rexport.add_argument(
        "--format",
        choices=["label-studio", "csv"],
        help="default: csv for an --out ending in .csv, else label-studio",
    )
    rexport.add_argument(
        "--stratify", action="store_true", help="alternate suggested classes in the queue"
    )
    rexport.add_argument("--limit", type=int, help="at most this many records")
    rexport.add_argument(
        "--audit",
        type=int,
        default=0,
        metavar="N",
        help="also N auto-accepted records (reason audit) to measure automatic precision",
    )
    rexport.add_argument(
        "--image-url-prefix",
        default=None,
        help="image tasks: prefix of the image URLs, followed by drops/<task>/<drop>/<file> "
        "(default: Label Studio's local-files route, /data/local-files/?d=)",
    )
    rimport = rsub.add_parser("import", help="import decisions (Label Studio JSON or CSV)")
    rimport.add_argument("task")
    rimport.add_argument("file")
    return parser


def _print_summary(summary: dict[str, Any]) -> None:
    print(json.dumps(summary), flush=True)


def cmd_run(runner: Runner, args: argparse.Namespace) -> int:
    from annotation_assets.core.s3 import is_s3_url

    if is_s3_url(args.drop):
        drop_id = runner.stage_s3_drop(args.task, args.drop)
    else:
        drop_id = runner.stage_drop(args.task, Path(args.drop))
    from annotation_assets.core.ingest import list_drop_files

    if not list_drop_files(runner.home.drop_dir(args.task, drop_id)):
        print(
            f"annotate: note: drop {drop_id} holds no files (hidden and _marker files do not"
            " count)",
            file=sys.stderr,
        )
    _print_summary(runner.run_drop(args.task, drop_id))
    return 0


def cmd_export(runner: Runner, args: argparse.Namespace) -> int:
    from annotation_assets.core.s3 import is_s3_url

    spec = runner.spec(args.task)
    out = args.out or spec.export_sink
    if not out:
        raise UsageError(
            f"give --out (a folder or s3://bucket/prefix/) or set sink: in {spec.name}"
        )
    mode = args.balance or spec.balance.mode
    if is_s3_url(out):
        return _export_to_s3(runner, spec, out, mode)
    if Path(out).exists() and not Path(out).is_dir():
        named = "--out" if args.out else f"the sink of {spec.name}"
        raise UsageError(f"{named} {out} is a file; export writes into a folder")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot make the folder {out}: {err.strerror or err}") from None
    with _warehouse_for(runner, spec.name).connect() as conn:
        path, rows, balance = _write_export(conn, spec, Path(out), mode)
    print(json.dumps({"task": spec.name, "path": str(path), "rows": rows, "balance": balance}))
    return 0


def _write_export(
    conn: "duckdb.DuckDBPyConnection",
    spec: TaskSpec,
    folder: Path,
    mode: str,
    *,
    staging: bool = False,
) -> tuple[Path, int, dict[str, Any]]:
    """Writes the task's export file (JSONL, or COCO for image tasks) into `folder`, balanced
    by `mode`: (its path, its rows, the balance summary). A file that cannot be written (a
    folder in its place, a full disk) is refused in one line."""
    from annotation_assets import exports
    from annotation_assets.core import export

    keep, balance = exports.balanced_selection(conn, spec, mode)
    keep_ids = None if mode == "none" else keep
    try:
        if spec.is_image:
            path, rows = exports.export_coco(conn, spec, folder, keep_ids=keep_ids)
        else:
            path, rows = exports.export_jsonl(conn, spec.name, folder, keep_ids=keep_ids)
    except export.ExportWriteError as err:
        raise UsageError(f"{err} (staging the S3 export)" if staging else str(err)) from None
    return path, rows, balance


def _export_to_s3(runner: Runner, spec: TaskSpec, out: str, mode: str) -> int:
    """Exports into a temporary folder, then publishes `<prefix>v<N>/` with its manifest."""
    import tempfile

    from annotation_assets import exports
    from annotation_assets.core import export, s3

    try:
        url = s3.parse_s3_url(out)
    except ValueError as err:
        raise UsageError(str(err)) from None
    client = s3.client_from_env()
    s3.check_bucket(client, url.bucket)
    with tempfile.TemporaryDirectory(prefix="annotate-export-") as tmp:
        with _warehouse_for(runner, spec.name).connect() as conn:
            # the local staging folder is in TMPDIR
            path, rows, balance = _write_export(conn, spec, Path(tmp), mode, staging=True)
            lineage = exports.dataset_lineage(conn, spec.name)
        manifest = export.publish_to_s3(
            client,
            url,
            [(path, rows)],
            fields={
                "task": spec.name,
                "spec_hash": export.spec_hash(spec),
                **lineage,
                "balance": balance,
            },
        )
    version = manifest["version"]
    print(
        json.dumps(
            {
                "task": spec.name,
                "path": f"s3://{url.bucket}/{manifest['files'][0]['key']}",
                "rows": rows,
                "balance": balance,
                "version": version,
                "manifest": str(url.child(f"v{version}")) + export.MANIFEST,
            }
        )
    )
    return 0


def _status_rows(runner: Runner, tasks: Sequence[str]) -> list[dict[str, Any]]:
    from annotation_assets.warehouse.counts import drop_counts

    rows: list[dict[str, Any]] = []
    if not runner.warehouse.exists():
        return rows
    with runner.warehouse.connect() as conn:
        schemas = {
            r[0] for r in conn.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
        }
        for task in tasks:
            if task not in schemas:
                continue
            drops = conn.execute(f'SELECT drop_id FROM "{task}".drops ORDER BY seq').fetchall()
            rows.extend(_flat(drop_counts(conn, task, d)) for (d,) in drops)
    return rows


def _other_tasks(runner: Runner, tasks: Sequence[str]) -> list[str]:
    """Tasks whose tables the warehouse holds but that are not among `tasks` (specs from
    another tasks folder)."""
    if not runner.warehouse.exists():
        return []
    with runner.warehouse.connect() as conn:
        found = conn.execute(
            "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE table_name = 'drops'"
        ).fetchall()
        return sorted(
            name
            for (name,) in found
            if name not in tasks
            and conn.execute(f'SELECT count(*) FROM "{name}".drops').fetchone() != (0,)
        )


def _flat(summary: dict[str, Any]) -> dict[str, Any]:
    """A drop summary with its by_source counts as by_<source> columns, for tables."""
    return {**summary, **{f"by_{k}": v for k, v in summary["by_source"].items()}}


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = lambda values: "  ".join(str(v).rjust(w) for v, w in zip(values, widths, strict=True))  # noqa: E731
    return "\n".join([line(columns), *(line([r.get(c, "") for c in columns]) for r in rows)])


STATUS_COLUMNS = (
    "task",
    "drop",
    "ingested",
    "quarantined",
    "duplicates",
    "auto_accepted",
    "hitl_pending",
    "final_rows",
)


def cmd_status(runner: Runner, args: argparse.Namespace) -> int:
    tasks = [runner.spec(args.task).name] if args.task else sorted(runner.specs)
    runner.warn_spec_problems()
    rows = _status_rows(runner, tasks)
    print(f"home: {runner.home.root}")
    if not rows and args.task:
        print(f"no drops of {tasks[0]} have been run yet")
        return 0
    if not rows:
        others = _other_tasks(runner, sorted(runner.specs))
        print(
            f"no drops of the tasks in {runner.tasks_dir} have been run yet"
            + (
                f"; the warehouse also holds tasks {', '.join(others)} (is --tasks or"
                " $ANNOTATION_TASKS the folder of their specs?)"
                if others
                else ""
            )
        )
        return 0
    print(_table(rows, STATUS_COLUMNS))
    return 0


def cmd_demo(runner: Runner, args: argparse.Namespace) -> int:
    tasks = sorted(p.name for p in DEMO_DROPS.iterdir() if p.is_dir() and p.name in runner.specs)
    if not tasks:
        raise UsageError(
            f"no demo task in {runner.tasks_dir}; the bundled demo specs are in "
            f"{PROJECT_ROOT / 'tasks'}"
        )
    summaries = []
    for task in tasks:
        for drop in sorted(p for p in (DEMO_DROPS / task).iterdir() if p.is_dir()):
            print(f"running {task} drop {drop.name} ...", file=sys.stderr, flush=True)
            drop_id = runner.stage_drop(task, drop)
            summaries.append(runner.run_drop(task, drop_id, report=False))
        runner.refresh_report(task)
    rows = [_flat(s) for s in summaries]
    cols = (*STATUS_COLUMNS, "by_rule", "by_model", "by_heavy", "by_human")
    print(_table(rows, cols))
    home = runner.home.root
    reports = "".join(
        f"Quality report: {home / 'exports' / t / 'quality_report.html'}\n" for t in tasks
    )
    print(
        "\nNext steps:\n"
        f"  annotate --home {home} review export {tasks[0]} --out queue.json\n"
        f"  annotate --home {home} export {tasks[0]} --out {home / 'exports'}\n"
        f"{reports}"
        "Open the Dagster UI on the same home:\n"
        f"  ANNOTATION_HOME={home} DAGSTER_HOME={home / 'dagster'} "
        f"{Path(sys.executable).parent / 'dagster'} dev -m definitions -d {PROJECT_ROOT}\n"
    )
    total = {
        "task": ",".join(tasks),
        "drops": len(summaries),
        **{k: sum(s[k] for s in summaries) for k in STATUS_COLUMNS[2:]},
    }
    _print_summary(total)
    return 0


def _warehouse_for(runner: Runner, task: str) -> Any:
    if not runner.warehouse.exists():
        raise UsageError(f"{runner.home.root} has no warehouse yet: run a drop first")
    runner.warehouse.ensure_task(task)
    return runner.warehouse


def cmd_review_export(runner: Runner, args: argparse.Namespace) -> int:
    from annotation_assets.core import reviews
    from annotation_assets.stages import human

    spec = runner.spec(args.task)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.audit < 0:
        raise UsageError("--audit must not be negative")
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file such as queue.json")
    with _warehouse_for(runner, spec.name).connect() as conn:
        queue = human.review_queue(
            conn, spec, stratify=args.stratify, limit=args.limit, audit=args.audit
        )
        votes = human.votes_by_record(conn, spec.name)
    out = Path(args.out)
    fmt = args.format or ("csv" if out.suffix.lower() == ".csv" else "label-studio")
    prefix = args.image_url_prefix or reviews.DEFAULT_IMAGE_URL_PREFIX
    try:
        written = reviews.write_queue(queue, spec, votes, out, fmt, image_prefix=prefix)
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    print(
        json.dumps(
            {
                "task": spec.name,
                "records": len(queue),
                "contested": int((queue["reason"] == "contested").sum()),
                "audit": int((queue["reason"] == "audit").sum()),
                "files": [str(p) for p in written],
            }
        )
    )
    return 0


def cmd_review_import(runner: Runner, args: argparse.Namespace) -> int:
    import hashlib

    from annotation_assets.core import reviews
    from annotation_assets.stages import human
    from annotation_assets.warehouse.counts import drop_counts
    from annotation_assets.warehouse.decisions import human_decisions
    from annotation_assets.warehouse.tuning import comparisons

    spec = runner.spec(args.task)
    source = Path(args.file)
    try:
        parsed = reviews.parse_decisions(source)
    except reviews.ReviewFileError as err:
        raise UsageError(str(err)) from None
    warehouse = _warehouse_for(runner, spec.name)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    folder = runner.home.reviews / spec.name
    with warehouse.connect() as conn:
        kept = _kept_name(conn, spec.name, folder, f"{digest}-{source.name}", source)
        report = human.import_decisions(conn, spec, parsed, source_file=kept.name, new_file=True)
    for error in report.errors:
        print(f"annotate: {source.name}: {error}", file=sys.stderr)
    if report.imported + report.already_imported == 0:
        raise UsageError(f"no valid decisions in {source.name} ({len(report.errors)} errors)")
    if report.imported:
        reviews.keep_copy(source, kept)
    store = runner.home.models / spec.name
    compared = len(comparisons(store))
    drops = runner.apply_reviews(spec.name)
    for done in comparisons(store)[compared:]:  # the fine-tunes this import started
        print(
            f"annotate: {spec.name}: fine-tuned encoder {done['version']} in"
            f" {done.get('train_seconds') or 0:.0f}s; "
            + ("promoted" if done["promoted"] else "not promoted, the encoder in force stays")
            + f" ({done['reason']})",
            file=sys.stderr,
        )
    with warehouse.connect() as conn:
        decisions = human_decisions(conn, spec)
        totals = [drop_counts(conn, spec.name, d) for d in drops]
    status = decisions["status"].value_counts().to_dict()
    print(
        json.dumps(
            {
                "task": spec.name,
                "file": str(source),
                "rows": report.rows,
                "imported": report.imported,
                "already_imported": report.already_imported,
                "errors": len(report.errors),
                "decided": int(status.get("decided", 0)),
                "contested": int(status.get("contested", 0)),
                "awaiting_votes": int(status.get("awaiting_votes", 0)),
                "rescored_drops": len(drops),
                "hitl_pending": sum(t["hitl_pending"] for t in totals),
                "final_rows": sum(t["final_rows"] for t in totals),
            }
        )
    )
    return 0


def _kept_name(
    conn: "duckdb.DuckDBPyConnection", task: str, folder: Path, name: str, source: Path
) -> Path:
    """The name a decisions file arrives under in the reviews folder (which the human_labels
    asset replays): `<digest>-<name>`, then `<digest>-2-<name>`, ..., the first the warehouse
    has no votes from, so a file equal to an earlier one still counts (an annotator going
    back to an earlier label). A name the warehouse knows but the folder lacks is the copy an
    import killed before keeping it: it is completed on the way."""
    from annotation_assets.core import reviews

    digest, _, rest = name.partition("-")
    used = {
        r[0]
        for r in conn.execute(
            f'SELECT DISTINCT source_file FROM "{task}".human_labels'
            " WHERE starts_with(source_file, ?)",
            [f"{digest}-"],
        ).fetchall()
    }
    candidate, k = name, 1
    while candidate in used:
        if not (folder / candidate).exists():
            reviews.keep_copy(source, folder / candidate)
        k += 1
        candidate = f"{digest}-{k}-{rest}"
    return folder / candidate


def cmd_review(runner: Runner, args: argparse.Namespace) -> int:
    if args.review_command == "export":
        return cmd_review_export(runner, args)
    return cmd_review_import(runner, args)


COMMANDS = {
    "run": cmd_run,
    "export": cmd_export,
    "status": cmd_status,
    "demo": cmd_demo,
    "review": cmd_review,
}


def _check_home(root: Path) -> None:
    """A home must be a folder, or a path whose nearest existing part is a folder."""
    for part in (root, *root.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == root else f"lies under the file {part}"
                raise UsageError(f"the home {root} {what}, not a folder")
            return


def main(argv: Sequence[str] | None = None) -> int:
    from annotation_assets.progress import show_on_console

    args = _parser().parse_args(argv)
    show_on_console(True)
    runner = Runner(resolve_home(args.home), resolve_tasks_dir(args.tasks), verbose=args.verbose)
    try:
        _check_home(runner.home.root)
        return COMMANDS[args.command](runner, args)
    except (UsageError, SpecError, HomeConfigError, S3Error) as err:
        print(f"annotate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("annotate: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.verbose:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"annotate: internal error: {type(err).__name__}: {first} (rerun with -v for the "
            "traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
