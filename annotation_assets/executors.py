"""Which Dagster executor runs the steps of a run, chosen by $ANNOTATION_EXECUTOR.

- unset or `multiprocess`: Dagster's default, one process per step on this machine.
- `dask`: dagster-dask's executor; steps run on the Dask cluster at
  $DASK_SCHEDULER_ADDRESS (e.g. `tcp://scheduler:8786`), or on a local cluster when unset.
- `k8s`: dagster-k8s's `k8s_job_executor`, one Kubernetes Job per step (needs the `k8s`
  extra; see deploy/).
- `celery`: dagster-celery's executor on the broker in $DAGSTER_CELERY_BROKER_URL (needs
  dagster-celery installed).

The CLI always runs in-process; this only applies to runs launched through Dagster
(`dagster dev`, the daemon, a deployment)."""

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cloudpickle
import dagster as dg
from dagster_dask.executor import (
    DaskExecutor,
    dask_executor,
    get_dask_resource_requirements,
    query_on_dask_worker,
)

EXECUTORS = ("multiprocess", "dask", "k8s", "celery")


class ExecutorConfigError(ValueError):
    """$ANNOTATION_EXECUTOR names an unknown executor or one whose package is missing."""


def executor_from_env(
    environ: Mapping[str, str] = os.environ,
) -> dg.ExecutorDefinition | None:
    """The executor for every job, or None for Dagster's default (multiprocess)."""
    kind = (environ.get("ANNOTATION_EXECUTOR") or "multiprocess").strip().lower()
    if kind == "multiprocess":
        return None
    if kind == "dask":
        address = environ.get("DASK_SCHEDULER_ADDRESS")
        if address:
            return partition_safe_dask_executor.configured(
                {"cluster": {"existing": {"address": address}}}
            )
        return partition_safe_dask_executor
    if kind == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ExecutorConfigError(
                "ANNOTATION_EXECUTOR=k8s needs dagster-k8s: pip install 'annotation-pipeline[k8s]'"
            ) from None
        return k8s_job_executor
    if kind == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise ExecutorConfigError(
                "ANNOTATION_EXECUTOR=celery needs dagster-celery==0.29.27 installed"
            ) from None
        return celery_executor
    raise ExecutorConfigError(
        f"ANNOTATION_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {kind!r}"
    )


def _steps_on_worker(dependencies: Sequence[Any], payload: bytes) -> Sequence[dg.DagsterEvent]:
    """Runs on a Dask worker: unpickles the step's arguments and executes it."""
    return query_on_dask_worker(dependencies, *cloudpickle.loads(payload))


class PartitionSafeDaskExecutor(DaskExecutor):
    """dagster-dask's executor, with two fixes needed by partitioned runs of one job:

    - the run and its job reach the workers pickled: Dask walks named tuples among task
      arguments, and a partitioned run holds Dagster `@record`s, which refuse iteration
      (the run fails with "Iteration is not allowed on `@record`");
    - each Dask task key names the run, so two runs of the same job at once (a backfill)
      do not share futures (dagster-io/dagster#21418).

    Supports the `existing` (a scheduler address) and `local` (LocalCluster options)
    cluster types; for YARN, Kubernetes or a batch system, start the cluster with its own
    tool and pass its scheduler address."""

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        import dask.distributed
        from dagster._core.errors import raise_execution_interrupts
        from dagster._utils import iterate_with_context

        if not plan_context.instance.is_persistent:
            raise dg.DagsterInvariantViolationError(
                "Dask execution requires a persistent DagsterInstance (set DAGSTER_HOME)"
            )
        if self.cluster_type == "existing":
            cluster: Any = self.cluster_configuration["address"]
        elif self.cluster_type == "local":
            cluster = dask.distributed.LocalCluster(**self.cluster_configuration)
        else:
            raise dg.DagsterInvariantViolationError(
                f"cluster type {self.cluster_type!r} is not supported here: start the cluster "
                "and pass its scheduler address as cluster.existing.address"
            )
        run = plan_context.dagster_run
        instance_ref = plan_context.instance.get_ref()
        with dask.distributed.Client(cluster) as client:
            futures: dict[str, Any] = {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    dependencies = [
                        futures[key]
                        for step_input in step.step_inputs
                        for key in step_input.dependency_keys
                    ]
                    payload = cloudpickle.dumps(
                        (
                            plan_context.reconstructable_job,
                            run,
                            plan_context.run_config,
                            [step.key],
                            instance_ref,
                            execution_plan.known_state,
                        )
                    )
                    futures[step.key] = client.submit(
                        _steps_on_worker,
                        dependencies,
                        payload,
                        key=f"{run.job_name}.{step.key}.{run.run_id}",
                        resources=get_dask_resource_requirements(step.tags),
                        pure=False,
                    )
            done = dask.distributed.as_completed(list(futures.values()), with_results=True)
            for _future, events in iterate_with_context(raise_execution_interrupts, done):
                yield from events


@dg.executor(
    name="dask",
    config_schema=dask_executor.config_schema.as_field(),
    requirements=dg.multiple_process_executor_requirements(),
)
def partition_safe_dask_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """dagster-dask's executor config and behaviour (see PartitionSafeDaskExecutor)."""
    cluster: Mapping[str, Any] = init_context.executor_config["cluster"]  # type: ignore[assignment]
    ((cluster_type, cluster_configuration),) = cluster.items()
    return PartitionSafeDaskExecutor(cluster_type, cluster_configuration)
