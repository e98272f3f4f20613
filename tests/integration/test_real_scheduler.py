"""The real Airflow components, as separate processes, run one `idc_sync` run against the sandbox.

What ``dag.test()`` cannot show: the scheduler queues the tasks, the LocalExecutor runs them through the
execution API, ``scim_health`` *defers* (state ``deferred``, no worker slot) and the separate triggerer
process polls Graph until SCIM is healthy, then the task resumes on a worker and the run finishes.

Set-up: a fresh PostgreSQL database on 127.0.0.1:5432 (trust auth; created with a unique name and dropped
at the end) or, when PostgreSQL/psycopg2 is not available, SQLite; an AIRFLOW_HOME in a tmp dir;
``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` on free ports; connections as
``AIRFLOW_CONN_*`` pointing at a sandbox served by this test process (so the test can change Entra's job
while the run waits). Cron scheduling is off (``[scheduler] use_job_schedule=False``): the only run is the
one triggered through the REST API.

Story: Entra's provisioning job is stale (last success 3 h ago) -> the run is triggered -> ``scim_health``
reaches ``deferred`` -> a SCIM cycle runs in Entra (job healthy again, taro.tanaka and victor provisioned) ->
the triggerer fires, ``scim_health`` succeeds with a *healthy* verdict, and the run ends ``success`` with
exactly the assignments the records ask for (taro's and victor's included, as they arrived with that cycle).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from airflow_stack import airflow_stack, finished_run, parsed_and_unpaused, wait_until
from demo_grants import AFTER_SCIM_CYCLE, SEEDED, WANTED, granted

from idc_sandbox import graph
from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

DAG_ID = "idc_sync"
APPROVAL_DAG_ID = "idc_sync_approval"


# --------------------------------------------------------------------------- the test
def test_scim_sensor_defers_to_the_real_triggerer_and_the_run_succeeds(tmp_path: Path) -> None:
    started = time.monotonic()
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    # Entra's job last succeeded 3 h ago: stale, so scim_health cannot finish on its first inline check.
    graph.set_job(sandbox, last_success_minutes_ago=180)
    assert granted(sandbox) == SEEDED

    with airflow_stack(tmp_path, sandbox) as (procs, api, audit):
        parsed_and_unpaused(api, procs, DAG_ID)

        run_id = api.trigger(DAG_ID)
        print(f"triggered {run_id} at +{time.monotonic() - started:.0f} s")

        def deferred() -> bool:
            states = api.task_states(DAG_ID, run_id)
            assert states.get("scim_health") not in ("success", "failed", "skipped", "upstream_failed"), (
                f"scim_health finished without deferring: {states}"
            )
            return states.get("scim_health") == "deferred"

        wait_until("scim_health to be deferred", 240, deferred, procs)
        print(f"scim_health deferred at +{time.monotonic() - started:.0f} s")
        # While deferred, the task holds no worker slot and nothing downstream of it has run (IdC's
        # principals are read after the check, so the people this SCIM cycle brings are seen).
        waiting = api.task_states(DAG_ID, run_id)
        for task_id in ("observe_idc", "compute_diff"):
            assert waiting.get(task_id) in (None, "none", "scheduled", "queued"), waiting
        assert "taro.tanaka@example.com" not in {
            u.user_name for u in sandbox.world.identity_store.users.values()
        }

        # Entra runs a provisioning cycle: the job is healthy again and the new joiner arrives.
        cycle = graph.run_scim_cycle(sandbox)
        assert cycle["provisioned"], cycle

        run = finished_run(api, procs, DAG_ID, run_id, 420)
        states = api.task_states(DAG_ID, run_id)
        print(f"run {run_id} {run['state']} at +{time.monotonic() - started:.0f} s: {states}")
        assert run["state"] == "success", states
        assert states["scim_health"] == "success"

        # The verdict that reached the later tasks came from the triggerer's poll after the cycle.
        artifacts = sorted(audit.glob("runs/*/*.json"))
        assert artifacts, "notify wrote no audit artifact"
        artifact = json.loads(artifacts[-1].read_text())
        assert artifact["scim"]["status"] == "healthy", artifact["scim"]
        assert artifact["run_id"] == run_id
        # Graph was read by the worker (inline check) and by the triggerer (at least once after the cycle).
        assert len(sandbox.calls.calls("graph", "listJobs")) >= 2

        # The real scheduler path applied the plan: exactly what the records ask for, taro's and victor's
        # included (they arrived with that cycle).
        assert granted(sandbox) == SEEDED | WANTED | AFTER_SCIM_CYCLE
        assert run.get("note") and "SCIM healthy" in run["note"]
    print(f"real-scheduler test took {time.monotonic() - started:.0f} s")


def _slack_texts(sandbox: Sandbox) -> list[str]:
    out = []
    for m in sandbox.world.slack.messages:
        parts = [m.payload.get("text", "")]
        parts += [(b.get("text") or {}).get("text", "") for b in m.payload.get("blocks") or []]
        out.append("\n".join(parts))
    return out


def test_unanswered_approval_never_blocks_the_sync_and_ends_in_reject(tmp_path: Path) -> None:
    """Issue 9 defect 6 with the real scheduler: the guard trips (max_deletions=0), the idc_sync run
    applies the creations, runs notify and finishes while the question waits in idc_sync_approval; nobody
    answers within its (short) response timeout, the scheduler's sweep applies Reject, the decision is
    recorded and posted, and nothing is deleted."""
    started = time.monotonic()
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    assert granted(sandbox) == SEEDED
    response_timeout = 30

    with airflow_stack(
        tmp_path,
        sandbox,
        {"max_deletions": 0},  # any deletion trips the guard
        IDC_SYNC_APPROVAL_TIMEOUT_SECONDS=str(response_timeout),
    ) as (procs, api, audit):
        parsed_and_unpaused(api, procs, DAG_ID, APPROVAL_DAG_ID)

        run_id = api.trigger(DAG_ID)
        run = finished_run(api, procs, DAG_ID, run_id, 600)
        states = api.task_states(DAG_ID, run_id)
        print(f"run {run_id} {run['state']} at +{time.monotonic() - started:.0f} s: {states}")
        # the sync did not wait for the human: finished, notify ran, creations applied
        assert run["state"] == "success", states
        assert states["notify"] == "success" and states["request_approval"] == "success", states
        assert "approve_deletions" not in states
        assert granted(sandbox) == SEEDED | WANTED  # the creations; LegacyDeveloper's deletion is withheld

        approval_runs = api("GET", f"/dags/{APPROVAL_DAG_ID}/dagRuns")["dag_runs"]
        assert len(approval_runs) == 1, approval_runs
        approval_run_id = approval_runs[0]["dag_run_id"]
        assert approval_runs[0]["conf"]["requested_by"] == run_id
        approval_run = finished_run(api, procs, APPROVAL_DAG_ID, approval_run_id, 300 + response_timeout)
        approval_states = api.task_states(APPROVAL_DAG_ID, approval_run_id)
        print(
            f"approval run {approval_run['state']} at +{time.monotonic() - started:.0f} s: {approval_states}"
        )
        assert approval_run["state"] == "success", approval_states
        assert approval_states["record_decision"] == "success"
        assert approval_states["run_sync"] == "skipped"
        # the HITL operator's notifier asked on Slack: Block Kit, the deletion listed, the approval page's
        # link built from [api] base_url
        page = f"/dags/{APPROVAL_DAG_ID}/runs/{approval_run_id}/tasks/approve_deletions/required_actions"
        asks = [
            m.payload
            for m in sandbox.world.slack.messages
            if "wait for your approval" in m.payload.get("text", "")
        ]
        assert len(asks) == 1, _slack_texts(sandbox)
        ask = json.dumps(asks[0])
        assert asks[0]["blocks"][0]["type"] == "header" and "LegacyDeveloper" in ask, ask
        assert f"{api.url}{page}" in ask, ask
        decisions = json.loads((audit / "state" / "approval_decisions.json").read_text())
        (decision,) = decisions.values()
        assert decision["answer"] == "reject" and decision["timed_out"] is True, decision
        assert any("default, Reject" in t for t in _slack_texts(sandbox)), _slack_texts(sandbox)
        assert not sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
        assert not sandbox.calls.calls("sso-admin", "DeletePermissionSet")
        assert granted(sandbox) == SEEDED | WANTED
    print(f"real-scheduler approval test took {time.monotonic() - started:.0f} s")
