"""Asset checks of every stage table of a task; the blocking ones stop bad data flowing on."""

import math

import dagster as dg
import pandera.pandas as pa

from annotation_assets.core import drift
from annotation_assets.factory import STAGE_TABLES, TaskAssets
from annotation_assets.warehouse.counts import drop_counts
from checks.schemas import table_schemas
from resources import Warehouse


def _schema_check(
    ta: TaskAssets, table: str, schema: pa.DataFrameSchema
) -> dg.AssetChecksDefinition:
    task = ta.spec.name
    cols = ", ".join(f'"{c}"' for c in schema.columns)

    @dg.asset_check(
        asset=ta.key(table),
        name="schema",
        blocking=True,
        partitions_def=ta.partitions,
        description=f"The drop's {table} rows match the table's pandera schema.",
    )
    def check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            frame = conn.execute(
                f'SELECT {cols} FROM "{task}"."{table}" WHERE drop_id = ?', [context.partition_key]
            ).fetchdf()
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as err:
            failures = err.failure_cases
            return dg.AssetCheckResult(
                passed=False,
                description=f"{len(failures)} schema violation(s)",
                metadata={
                    "failures": dg.MetadataValue.md(
                        failures.head(20).astype(str).to_markdown(index=False)
                    )
                },
            )
        return dg.AssetCheckResult(passed=True, metadata={"rows": len(frame)})

    return check


def build_task_checks(ta: TaskAssets) -> list[dg.AssetChecksDefinition]:
    spec = ta.spec
    task = spec.name
    labels = spec.label_names
    schemas = table_schemas(spec)
    checks = [_schema_check(ta, table, schemas[table]) for table in STAGE_TABLES]

    @dg.asset_check(
        asset=ta.key("final_dataset"),
        blocking=True,
        partitions_def=ta.partitions,
        description="ingested = final + pending + quarantined + duplicates for the drop.",
    )
    def rows_conserved(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            c = drop_counts(conn, task, context.partition_key)
        accounted = c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
        return dg.AssetCheckResult(
            passed=accounted == c["ingested"],
            description=f"{c['ingested']} ingested, {accounted} accounted for",
            metadata={k: v for k, v in c.items() if isinstance(v, int)},
        )

    @dg.asset_check(
        asset=ta.key("final_dataset"),
        blocking=True,
        partitions_def=ta.partitions,
        description="No record id appears twice in the task's final dataset.",
    )
    def unique_ids(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            dupes = conn.execute(
                f'SELECT id, count(*) AS n FROM "{task}".final_dataset GROUP BY id HAVING n > 1'
                " ORDER BY n DESC LIMIT 20"
            ).fetchall()
        return dg.AssetCheckResult(
            passed=not dupes,
            metadata={"duplicated_ids": dg.MetadataValue.json([r[0] for r in dupes])},
        )

    @dg.asset_check(
        asset=ta.key("final_dataset"),
        partitions_def=ta.partitions,
        description="Largest over smallest class in the final dataset stays within "
        "checks.class_balance.max_ratio.",
    )
    def class_balance(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            counts = dict(
                conn.execute(
                    f'SELECT label, count(*) FROM "{task}".final_dataset GROUP BY 1'
                ).fetchall()
            )
        ratio = drift.imbalance_ratio(counts, labels=labels)
        bound = spec.checks.class_balance.max_ratio
        return dg.AssetCheckResult(
            passed=bool(math.isnan(ratio) or ratio <= bound),
            severity=dg.AssetCheckSeverity.WARN,
            description=f"imbalance ratio {ratio:.2f} (bound {bound})",
            metadata={
                "ratio": ratio if math.isfinite(ratio) else None,
                "counts": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
            },
        )

    @dg.asset_check(
        asset=ta.key("final_dataset"),
        partitions_def=ta.partitions,
        description="Label distribution of this drop against all earlier drops (PSI within "
        "checks.drift.max_psi; chi-square p-value reported).",
    )
    def label_drift(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            rows = conn.execute(
                f"""
                SELECT (f.drop_id = $drop) AS current, f.label, count(*)
                FROM "{task}".final_dataset f JOIN "{task}".drops d USING (drop_id)
                WHERE d.seq <= (SELECT seq FROM "{task}".drops WHERE drop_id = $drop)
                GROUP BY ALL
                """,
                {"drop": context.partition_key},
            ).fetchall()
        current = {label: int(n) for is_cur, label, n in rows if is_cur}
        earlier = {label: int(n) for is_cur, label, n in rows if not is_cur}
        if not earlier or not current:
            return dg.AssetCheckResult(
                passed=True, severity=dg.AssetCheckSeverity.WARN, description="no earlier drops"
            )
        psi = drift.population_stability_index(earlier, current, labels=labels)
        p_value = drift.chi_square_p_value(earlier, current, labels=labels)
        return dg.AssetCheckResult(
            passed=psi <= spec.checks.drift.max_psi,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"PSI {psi:.3f} (bound {spec.checks.drift.max_psi})",
            metadata={
                "psi": psi,
                "chi_square_p": p_value if math.isfinite(p_value) else None,
                "current": dg.MetadataValue.json(current),
                "earlier": dg.MetadataValue.json(earlier),
            },
        )

    @dg.asset_check(
        asset=ta.key("hitl_pending"),
        partitions_def=ta.partitions,
        description="Share of the drop's records sent to people stays within "
        "thresholds.review_budget.",
    )
    def review_rate(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            pending, total = conn.execute(
                f"""SELECT (SELECT count(*) FROM "{task}".hitl_pending WHERE drop_id = $d),
                           (SELECT count(*) FROM "{task}".normalized_records WHERE drop_id = $d)""",
                {"d": context.partition_key},
            ).fetchall()[0]
        rate = pending / total if total else 0.0
        budget = spec.thresholds.review_budget
        return dg.AssetCheckResult(
            passed=rate <= budget,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"review rate {rate:.1%} (budget {budget:.0%})",
            metadata={"review_rate": rate, "pending": int(pending), "records": int(total)},
        )

    return [*checks, rows_conserved, unique_ids, class_balance, label_drift, review_rate]
