"""The stage computations over the warehouse: what each asset of a task computes."""
