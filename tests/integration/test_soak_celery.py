"""The soak on the Celery stack (issue 14): the same runs, faults, record churn and checks as ``test_soak``,
but every run is scheduled by the real scheduler and executed by two Celery workers (Redis broker,
PostgreSQL metadata, the state store shared by both), and the run killed mid-apply loses its *worker*:
the worker running ``apply_assignments`` is SIGKILLed with every process under it (a lost machine) while
assignments are being created, a replacement worker joins, and the scheduler retries the task on a live
worker. (``test_celery_executor`` kills only the worker's process group: the other way a worker dies.)

``make test`` runs the short form (``IDC_SYNC_CELERY_SOAK_RUNS``, default 4); ``make soak`` a longer one and
writes its figures to ``benchmarks/soak-celery-report.json``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow_stack import AirflowProcesses, finished_run, wait_until
from celery_stack import DAG_ID, celery_airflow, kill_machine, start_worker, ti_hosts

from idc_sandbox.core import FaultRule, Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed
from idc_sync_airflow.airflow_api import AirflowApi
from tests.integration.conftest import DEFAULT_PARAMS, SyncHarness
from tests.integration.test_soak import SEED, SOAK_CONFIG, UNMANAGED, Soak, soak_and_check

pytestmark = [pytest.mark.integration, pytest.mark.timeout(4 * 3600)]

RUNS = int(os.environ.get("IDC_SYNC_CELERY_SOAK_RUNS", "4"))
REPORT = os.environ.get("IDC_SYNC_CELERY_SOAK_REPORT")


class StackHarness(SyncHarness):
    """The soak's harness, with runs triggered through the REST API and run by the Celery workers."""

    def __init__(self, sandbox: Sandbox, api: AirflowApi, procs: AirflowProcesses, audit: Path) -> None:
        super().__init__(sandbox, "", None, audit)
        self.api, self.procs = api, procs

    def run(self, **conf: Any) -> Any:
        run_id = self.trigger(**conf)
        return SimpleNamespace(
            run_id=run_id, state=finished_run(self.api, self.procs, DAG_ID, run_id, 900)["state"]
        )

    def trigger(self, **conf: Any) -> str:
        return self.api.trigger(DAG_ID, conf={**DEFAULT_PARAMS, **conf})


class CelerySoak(Soak):
    def __init__(self, harness: StackHarness, rng: random.Random, workers: dict[str, Any]) -> None:
        super().__init__(harness, rng)
        self.stack = harness
        self.workers = workers
        self.killed_what = (
            "the Celery worker running apply_assignments and every process under it (a lost machine)"
        )
        self.retried_on: list[str] = []

    def run_worker_killed_mid_apply(self, index: int) -> None:
        """Two new records; once ``apply_assignments`` has created one assignment, its worker dies."""
        self.add()
        self.add()
        wanted = self.oracle.wanted(self._provisioned()) | UNMANAGED
        self.sb.faults.add(
            FaultRule(
                service="sso-admin", kind="latency", operation="CreateAccountAssignment", latency_ms=3000
            )
        )
        start = len(self.sb.calls.calls("sso-admin", "CreateAccountAssignment"))
        api, procs = self.stack.api, self.stack.procs
        run_id = self.stack.trigger()

        def applying() -> str | None:
            if api.task_states(DAG_ID, run_id).get("apply_assignments") != "running":
                return None
            if len(self.sb.calls.calls("sso-admin", "CreateAccountAssignment")) <= start:
                return None
            return ti_hosts(api, run_id).get("apply_assignments") or None

        victim = wait_until("apply_assignments to be creating assignments", 900, applying, procs, every=0.5)
        kill_machine(self.workers[victim])
        del procs.procs[victim], self.workers[victim]  # expected dead: check_alive must not fail on it
        replacement = f"worker_r{self.killed + 1}"
        self.workers[replacement] = start_worker(procs, Path(procs.env["AIRFLOW_HOME"]), replacement)
        self.sb.faults.clear()
        state = finished_run(api, procs, DAG_ID, run_id, 900)["state"]
        tries = api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/apply_assignments/tries")
        hosts = [Path(t.get("hostname") or "").name for t in tries["task_instances"]]
        assert hosts[0] == victim and len(hosts) >= 2 and victim not in hosts[1:], hosts
        self.retried_on = hosts
        self.runs += 1
        self.killed += 1
        if state != "success":
            self.failed_runs.append(run_id)
        self.after(index, wanted)


def test_soak_on_celery_converges_when_a_worker_dies_mid_apply(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    with celery_airflow(tmp_path, sandbox, SOAK_CONFIG) as (procs, api, audit, workers):
        harness = StackHarness(sandbox, api, procs, audit)
        soak = CelerySoak(harness, random.Random(SEED), workers)
        figures = soak_and_check(soak, RUNS, soak.run_worker_killed_mid_apply, REPORT)
        assert soak.retried_on, "the killed worker's task was retried on another worker"
        print(f"apply_assignments tries ran on {soak.retried_on}; figures: {figures['minutes']} min")
