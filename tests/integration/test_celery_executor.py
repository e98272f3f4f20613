"""CeleryExecutor, proven: the scheduler, dag-processor, triggerer and api-server with two Celery workers
(Redis broker on this machine, PostgreSQL metadata), the state store shared by both workers.

Story: a sync starts; while ``apply_assignments`` is creating assignments (slowed by the sandbox), the
worker running it is SIGKILLed with its whole process group (no callback, no heartbeat). The scheduler
finds the task's heartbeat gone, the task is retried on the other worker, the apply journal makes the retry
continue where the killed try stopped: the run succeeds, IdC holds exactly what the records ask for, no
assignment was created twice, and a second run on the surviving worker says nothing twice (the comment
memory is shared).

Which worker ran a task instance: each worker runs in its own directory and reports it as its hostname
(``[core] hostname_callable = os.getcwd``), so the task instance's ``hostname`` names the worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from airflow_stack import finished_run, wait_until
from celery_stack import WORKERS, celery_airflow, ti_hosts
from demo_grants import BY_RECORD, SEEDED, WANTED, granted

from idc_sandbox.core import FaultRule, Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

DAG_ID = "idc_sync"


def _creates(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    return Counter(
        (c.params.get("TargetId"), c.params.get("PermissionSetArn"), c.params.get("PrincipalId"))
        for c in sandbox.calls.calls("sso-admin", "CreateAccountAssignment")
        if c.status == 200
    )


def _comments(sandbox: Sandbox) -> list[tuple[int, int, str]]:
    with sandbox.lock:
        return [
            (app.id, record_id, c.text)
            for app in sandbox.world.kintone.apps.values()
            for record_id, items in app.comments.items()
            for c in items
        ]


def test_celery_workers_share_the_work_survive_a_killed_worker_and_say_nothing_twice(tmp_path: Path) -> None:
    started = time.monotonic()
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    # the seed's one deletion waits for a human: this test is about creations
    with celery_airflow(tmp_path, sandbox, {"max_deletions": 0}) as (procs, api, _audit, workers):
        # every assignment creation takes 4 s: apply_assignments runs long enough to be killed mid-way
        sandbox.faults.add(
            FaultRule(
                service="sso-admin", kind="latency", operation="CreateAccountAssignment", latency_ms=4000
            )
        )
        run_id = api.trigger(DAG_ID)

        def applying() -> str | None:
            hosts = ti_hosts(api, run_id)
            states = api.task_states(DAG_ID, run_id)
            if states.get("apply_assignments") == "running" and sum(_creates(sandbox).values()) >= 2:
                return hosts.get("apply_assignments") or None
            return None

        victim = wait_until(
            "apply_assignments to be running with creations made", 600, applying, procs, every=0.5
        )
        assert victim in WORKERS, victim
        made_before_kill = sum(_creates(sandbox).values())
        os.killpg(workers[victim].pid, signal.SIGKILL)
        workers[victim].wait(timeout=30)
        del procs.procs[victim]  # expected dead: check_alive must not fail on it
        survivor = next(w for w in WORKERS if w != victim)
        print(f"killed {victim} after {made_before_kill} creation(s) at +{time.monotonic() - started:.0f} s")
        sandbox.faults.clear()

        run = finished_run(api, procs, DAG_ID, run_id, 600)
        states = api.task_states(DAG_ID, run_id)
        hosts = ti_hosts(api, run_id)
        print(f"run {run['state']} at +{time.monotonic() - started:.0f} s: {states} on {hosts}")
        assert run["state"] == "success", states
        # the killed try's task was retried on the other worker and finished the work
        assert hosts["apply_assignments"] == survivor, hosts
        tries = api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/apply_assignments/tries")[
            "task_instances"
        ]
        assert [Path(t.get("hostname") or "").name for t in tries] == [victim, survivor], tries
        # exactly what the records ask for, each created once although a try died mid-way
        assert granted(sandbox) == SEEDED | WANTED
        creates = _creates(sandbox)
        assert creates and max(creates.values()) == 1, {k: n for k, n in creates.items() if n > 1}
        assert sum(creates.values()) == len(WANTED - SEEDED)
        comments = _comments(sandbox)
        assert comments, "the run commented on the records with mistakes"
        # Killing the worker's process group orphans the task runner (Airflow gives it a group of its
        # own): it finishes the apply alone and cannot report it, so the retry finds the access in place.
        # The records are told all the same (the soak found them untold once).
        headers = ("アクセス権を AWS IAM Identity Center に反映しました。", "Your access is live")
        told = {(a, r) for a, r, t in comments if any(h in t for h in headers)}
        asked = {(2, rec) for rec, gs in BY_RECORD.items() if gs & (WANTED - SEEDED)}
        assert asked <= told, sorted(asked - told)

        # a second run on the surviving worker: nothing changes, nothing is said twice
        second = api.trigger(DAG_ID)
        assert finished_run(api, procs, DAG_ID, second, 600)["state"] == "success"
        assert {h for h in ti_hosts(api, second).values() if h} == {survivor}
        assert _comments(sandbox) == comments
        assert sum(_creates(sandbox).values()) == sum(creates.values())
    print(f"celery test took {time.monotonic() - started:.0f} s")
