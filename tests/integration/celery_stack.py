"""Celery workers beside an ``airflow_stack``: a Redis database of their own and workers that name
themselves (each runs in its own directory and reports it as its hostname: ``[core] hostname_callable =
os.getcwd``, so a task instance's ``hostname`` names the worker that ran it)."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_stack import AirflowProcesses, airflow_stack, parsed_and_unpaused

from idc_sandbox.core import Sandbox
from idc_sandbox.server import free_port

DAG_ID = "idc_sync"
WORKERS = ("worker_a", "worker_b")
# Celery settings of a stack whose killed worker's task is found within seconds, not the default 5 minutes
CELERY_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "IDC_SYNC_RETRY_DELAY_SECONDS": "1",
}


@contextlib.contextmanager
def redis_db() -> Any:
    """A Redis database of its own on this machine's Redis (emptied before and after)."""
    import redis

    db = random.SystemRandom().randint(2, 15)
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    client.flushdb()
    try:
        yield f"redis://127.0.0.1:6379/{db}"
    finally:
        client.flushdb()
        client.close()


def start_worker(procs: AirflowProcesses, home: Path, name: str) -> subprocess.Popen[bytes]:
    """``airflow celery worker`` in its own directory (its hostname) with its own log-server port."""
    workdir = home / name
    workdir.mkdir()
    env = {
        **procs.env,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "os.getcwd",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    log = open(procs.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "celery",
            "worker",
            "--concurrency",
            "2",
            "--celery-hostname",
            name,
        ],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    procs.procs[name] = proc
    return proc


def ti_hosts(api: Any, run_id: str) -> dict[str, str]:
    tis = api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: Path(ti.get("hostname") or "").name for ti in tis}


@contextlib.contextmanager
def celery_airflow(tmp_path: Path, sandbox: Sandbox, config: dict[str, Any]) -> Any:
    """``airflow_stack`` on the CeleryExecutor with the two ``WORKERS`` started and the DAG parsed and
    unpaused; yields (procs, api, audit folder, workers by name). Both workers run on this machine and see
    the same state folder: declared shared (``state_store_shared``), else the tasks refuse to start."""
    with (
        redis_db() as redis,
        airflow_stack(
            tmp_path,
            sandbox,
            {**config, "state_store_shared": True},
            executor="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=redis,
            AIRFLOW__CELERY__RESULT_BACKEND=redis,
            **CELERY_ENV,
        ) as (procs, api, audit),
    ):
        home = Path(procs.env["AIRFLOW_HOME"])
        workers = {name: start_worker(procs, home, name) for name in WORKERS}
        parsed_and_unpaused(api, procs, DAG_ID)
        yield procs, api, audit, workers


def kill_machine(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and every process under it, as when its machine or pod is lost. (Killing only
    the worker's process group would orphan the task runner, which Airflow puts in a group of its own:
    it finishes its work alone and cannot report it — the other way a worker dies.)"""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
