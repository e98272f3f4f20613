"""The real Airflow components as separate processes, for integration tests that depend on them.

A fresh PostgreSQL metadata database (SQLite when PostgreSQL is not usable), an AIRFLOW_HOME in a tmp dir,
``airflow api-server``, ``dag-processor``, ``scheduler`` and ``triggerer`` (plus any extra components, e.g.
Celery workers) on free ports bound to 127.0.0.1, connections as ``AIRFLOW_CONN_*`` pointing at a sandbox
served by the test process.
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

import requests

from idc_sandbox.connections import airflow_connection_env, object_storage_xcom_env
from idc_sandbox.core import Sandbox
from idc_sandbox.server import SandboxServer, free_port
from idc_sync_airflow.airflow_api import AirflowApi

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")


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

    def start(self, component: str, *args: str, name: str | None = None) -> None:
        """Start ``airflow <component> <args>``, known as ``name`` (default: the words joined by '-')."""
        name = name or "-".join((component, *args))
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", component, *args],
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
    tmp_path: Path,
    sandbox: Sandbox,
    config: dict[str, Any] | None = None,
    *,
    executor: str = "LocalExecutor",
    extra_components: tuple[tuple[str, ...], ...] = (),
    **extra_env: str,
) -> Iterator[Any]:
    """Sandbox server + metadata DB + api-server, dag-processor, scheduler and triggerer (and
    ``extra_components``: argument lists of further ``airflow`` commands, e.g. ``("celery", "worker")``),
    healthy and logged in; yields (procs, api, audit folder). Dumps the components' logs when the test
    fails."""
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
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__BASE_URL": airflow_url,  # links in Slack point here, as in a deployment
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
            for args in extra_components:
                procs.start(*args)

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


def parsed_and_unpaused(
    api: AirflowApi, procs: AirflowProcesses, *dag_ids: str, timeout: float = 240
) -> None:
    """Waits until the dag-processor has parsed each DAG, and unpauses it (so the scheduler runs it)."""
    for dag_id in dag_ids:
        dag = wait_until(
            f"DAG {dag_id} to be parsed", timeout, lambda d=dag_id: api("GET", f"/dags/{d}"), procs
        )
        if dag.get("is_paused"):
            api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})


def finished_run(api: AirflowApi, procs: AirflowProcesses, dag_id: str, run_id: str, timeout: float) -> Any:
    def probe() -> dict[str, Any] | None:
        run = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    return wait_until(f"run {dag_id}/{run_id} to finish", timeout, probe, procs, every=3)
