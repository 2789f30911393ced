"""The DuckDB warehouse: table layouts, the Parquet-backed store, and the helpers every stage
shares (qualified names, drop-scoped writes, drop counts, stage timings)."""
