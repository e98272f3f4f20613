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

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from demo_grants import AFTER_SCIM_CYCLE, SEEDED, WANTED, granted

from idc_sandbox import graph
from idc_sandbox.connections import airflow_connection_env, object_storage_xcom_env
from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed
from idc_sandbox.server import SandboxServer, free_port
from idc_sync_airflow.airflow_api import AirflowApi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
DAG_ID = "idc_sync"
APPROVAL_DAG_ID = "idc_sync_approval"


# --------------------------------------------------------------------------- metadata database
@contextlib.contextmanager
def metadata_database(home: Path) -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards), else a SQLite file in ``home``.

    ``IDC_SYNC_TEST_METADATA_DB=sqlite`` forces SQLite (to check the fallback)."""
    try:
        if os.environ.get("IDC_SYNC_TEST_METADATA_DB") == "sqlite":
            raise RuntimeError("IDC_SYNC_TEST_METADATA_DB=sqlite")
        import psycopg2

        admin = psycopg2.connect(PG_ADMIN_DSN)
    except Exception as exc:  # no driver or no server: SQLite still runs every component
        print(f"PostgreSQL not usable ({type(exc).__name__}: {exc}); using SQLite")
        yield f"sqlite:///{home}/airflow.db"
        return
    name = f"idc_sync_test_{uuid.uuid4().hex[:12]}"
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        print(f"metadata database: PostgreSQL {name}")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --------------------------------------------------------------------------- processes
class AirflowProcesses:
    """Airflow components as subprocesses (own process groups), their logs in ``home/proc-logs``."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.logs = home / "proc-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, *args: str, timeout: float) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} failed ({out.returncode}):\n"
                f"{out.stdout.decode(errors='replace')[-3000:]}\n{out.stderr.decode(errors='replace')[-3000:]}"
            )

    def start(self, component: str) -> None:
        log = open(self.logs / f"{component}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[component] = subprocess.Popen(
            [sys.executable, "-m", "airflow", component],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() ends it with all its children
        )
        log.close()

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"Airflow component(s) exited: {dead}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def dump(self, tail: int = 6000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"===== {path.name} (tail) =====\n{path.read_text(errors='replace')[-tail:]}")
        for path in sorted((self.home / "logs").rglob("*.log")):
            parts.append(
                f"===== task log {path.relative_to(self.home)} =====\n{path.read_text(errors='replace')[-tail:]}"
            )
        return "\n".join(parts)


def wait_until(what: str, timeout: float, probe: Any, procs: AirflowProcesses, every: float = 2.0) -> Any:
    """Call ``probe()`` until it returns something truthy; fail after ``timeout`` or if a component died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            value = probe()
        except (requests.RequestException, AssertionError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


# --------------------------------------------------------------------------- the stack
@contextlib.contextmanager
def airflow_stack(
    tmp_path: Path, sandbox: Sandbox, config: dict[str, Any] | None = None, **extra_env: str
) -> Iterator[Any]:
    """Sandbox server + metadata DB + api-server, dag-processor, scheduler and triggerer, healthy and
    logged in; yields (procs, api, audit folder). Dumps the components' logs when the test fails."""
    from cryptography.fernet import Fernet

    home = tmp_path / "airflow-home"
    home.mkdir()
    audit = tmp_path / "audit"
    password = secrets.token_urlsafe(12)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
    api_port = free_port()
    airflow_url = f"http://127.0.0.1:{api_port}"
    with SandboxServer(sandbox) as server, metadata_database(home) as db_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "IDC_SYNC"))}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")]),
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs this test triggers
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                **object_storage_xcom_env(str(home / "xcom")),
                "IDC_SYNC_CONFIG": json.dumps({"audit_path": str(audit), **(config or {})}),
                **airflow_connection_env(
                    server.url, sandbox=sandbox, airflow_url=airflow_url, airflow_password=password
                ),
                **extra_env,
            }
        )
        procs = AirflowProcesses(home, env)
        api = AirflowApi(airflow_url)
        ok = False
        try:
            procs.run("db", "migrate", timeout=420)
            for component in COMPONENTS:
                procs.start(component)

            def healthy() -> bool:
                health = requests.get(f"{airflow_url}/api/v2/monitor/health", timeout=5).json()
                return all(
                    (health.get(c) or {}).get("status") == "healthy"
                    for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                )

            wait_until(
                "api-server, scheduler, triggerer and dag-processor to be healthy", 240, healthy, procs
            )
            api.login("admin", password)
            yield procs, api, audit
            ok = True
        finally:
            procs.stop()
            if not ok:
                print(procs.dump())


def finished_run(api: AirflowApi, procs: AirflowProcesses, dag_id: str, run_id: str, timeout: float) -> Any:
    def probe() -> dict[str, Any] | None:
        run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    return wait_until(f"run {dag_id}/{run_id} to finish", timeout, probe, procs, every=3)


# --------------------------------------------------------------------------- the test
def test_scim_sensor_defers_to_the_real_triggerer_and_the_run_succeeds(tmp_path: Path) -> None:
    started = time.monotonic()
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    # Entra's job last succeeded 3 h ago: stale, so scim_health cannot finish on its first inline check.
    graph.set_job(sandbox, last_success_minutes_ago=180)
    assert granted(sandbox) == SEEDED

    with airflow_stack(tmp_path, sandbox) as (procs, api, audit):
        dag = wait_until(f"DAG {DAG_ID} to be parsed", 240, lambda: api("GET", f"/dags/{DAG_ID}"), procs)
        if dag.get("is_paused"):
            api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})

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
        # While deferred, the task holds no worker slot and nothing downstream of it has run.
        assert api.task_states(DAG_ID, run_id).get("compute_diff") in (None, "none", "scheduled", "queued")
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
        for dag_id in (DAG_ID, APPROVAL_DAG_ID):
            dag = wait_until(
                f"DAG {dag_id} to be parsed", 240, lambda d=dag_id: api("GET", f"/dags/{d}"), procs
            )
            if dag.get("is_paused"):
                api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

        run_id = api.trigger(DAG_ID)
        run = finished_run(api, procs, DAG_ID, run_id, 600)
        states = api.task_states(DAG_ID, run_id)
        print(f"run {run_id} {run['state']} at +{time.monotonic() - started:.0f} s: {states}")
        # the sync did not wait for the human: finished, notify ran, creations applied
        assert run["state"] == "success", states
        assert states["notify"] == "success" and states["request_approval"] == "success", states
        assert "approve_deletions" not in states
        assert granted(sandbox) == SEEDED | WANTED  # the creations; LegacyDeveloper's deletion is withheld
        asks = [t for t in _slack_texts(sandbox) if "required_actions" in t and APPROVAL_DAG_ID in t]
        assert asks, _slack_texts(sandbox)

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
        decisions = json.loads((audit / "state" / "approval_decisions.json").read_text())
        (decision,) = decisions.values()
        assert decision["answer"] == "reject" and decision["timed_out"] is True, decision
        assert any("default, Reject" in t for t in _slack_texts(sandbox)), _slack_texts(sandbox)
        assert not sandbox.calls.calls("sso-admin", "DeleteAccountAssignment")
        assert not sandbox.calls.calls("sso-admin", "DeletePermissionSet")
        assert granted(sandbox) == SEEDED | WANTED
    print(f"real-scheduler approval test took {time.monotonic() - started:.0f} s")
