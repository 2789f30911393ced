"""Asset checks: schema, row conservation, unique ids, class balance, drift, review rate."""

from checks.task_checks import build_task_checks

__all__ = ["build_task_checks"]
