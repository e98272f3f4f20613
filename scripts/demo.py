"""`make demo`: the whole product on one machine, end to end, through the real Airflow scheduler.

1. starts the sandbox (kintone, IdC, Organizations, Entra, Slack emulators) seeded with the demo org;
2. starts `airflow standalone` (SQLite, LocalExecutor, api-server, scheduler, dag-processor, triggerer)
   with connections pointing at the sandbox;
3. triggers `idc_sync` through the REST API and waits for it;
4. prints what changed in IAM Identity Center, the kintone comments and the Slack message;
5. exits non-zero when the run failed. `--keep-running` leaves everything up for the UI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins")]

from idc_sandbox.connections import airflow_connection_env, object_storage_xcom_env  # noqa: E402
from idc_sync_airflow.airflow_api import AirflowApi, AirflowApiError  # noqa: E402

STATE = REPO / ".demo"


def wait_for(url: str, what: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see {STATE}/*.log")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit(f"{what} did not come up within {timeout:.0f}s ({url}); see {STATE}/*.log")


class Airflow(AirflowApi):
    """The REST API as the demo's admin, and the waits of the demo."""

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self("GET", f"/dags/{dag_id}")
                return
            except AirflowApiError:
                time.sleep(2)
        raise SystemExit(f"DAG {dag_id} was not parsed within {timeout:.0f}s: see {STATE}/airflow.log")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            run = self("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            line = ", ".join(
                f"{task}={state}" for task, state in self.task_states(dag_id, run_id).items() if state
            )
            if line != last:
                print(f"  {line}")
                last = line
            if run["state"] in ("success", "failed"):
                return dict(run)
            time.sleep(3)
        raise SystemExit(f"run {run_id} did not finish within {timeout:.0f}s")


def _get(sandbox: str, path: str) -> Any:
    resp = requests.get(f"{sandbox}/_sandbox/{path}", timeout=10)
    resp.raise_for_status()
    return resp.json()


def _assignment_keys(sandbox: str) -> set[tuple[str, str, str, str]]:
    rows = _get(sandbox, "state/assignments")["assignments"]
    return {
        (
            r["account_id"],
            r["permission_set"] or "?",
            r["principal_type"],
            r["principal_name"] or r["principal_id"],
        )
        for r in rows
    }


def report(sandbox: str, before: set[tuple[str, str, str, str]], run: dict[str, Any]) -> None:
    after = _assignment_keys(sandbox)
    added, removed = sorted(after - before), sorted(before - after)
    print(f"\n== IAM Identity Center: {len(added)} assignment(s) created, {len(removed)} removed ==")
    for sign, rows in (("+", added), ("-", removed)):
        for account, ps, ptype, who in rows:
            print(f"  {sign} {account}  {ps:<16} {ptype:<5} {who}")
    sets = _get(sandbox, "state/permission-sets")["permission_sets"]
    print(f"\n== Permission sets in IAM Identity Center ({len(sets)}) ==")
    for ps in sets:
        owner = "idc-sync" if ps["tags"].get("managed-by") == "idc-sync" else "not managed (left alone)"
        policies = ", ".join(p.rsplit("/", 1)[-1] for p in ps["managed_policies"])
        print(f"  {ps['name']:<24} {ps['session_duration']:<5} {owner:<26} {policies}")
    print("\n== kintone comments ==")
    for app in (1, 2):
        for record, comments in _get(sandbox, f"kintone/comments?app={app}")["records"].items():
            for c in comments:
                mentions = " ".join("@" + m.get("code", "") for m in c.get("mentions", []))
                print(f"--- app {app} record {record} {mentions}")
                print(c.get("text", ""))
    messages = _get(sandbox, "slack/messages")["messages"]
    print(f"\n== Slack ({len(messages)} message(s)) ==")
    for m in messages:
        payload = m["payload"]
        print(payload.get("text", ""))
        for block in payload.get("blocks", [])[1:]:
            print(block.get("text", {}).get("text", ""))
    print(f"\n== Run {run['dag_run_id']}: {run['state']} ==")
    if run.get("note"):
        print(f"note: {run['note']}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow and the sandbox running")
    parser.add_argument("--conf", default="{}", help="JSON trigger params for the demo run")
    args = parser.parse_args()

    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8765"))
    airflow_port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    airflow_url = f"http://127.0.0.1:{airflow_port}"
    STATE.mkdir(exist_ok=True)
    # Every demo starts from the seed: a fresh sandbox, so also a fresh Airflow database and audit store
    # (their memory of comments already posted would otherwise silence the new sandbox's records).
    shutil.rmtree(STATE / "audit", ignore_errors=True)
    for stale in ("airflow.db", "airflow.db-journal", "airflow.db-wal", "airflow.db-shm"):
        (STATE / "airflow" / stale).unlink(missing_ok=True)
    home = STATE / "airflow"
    home.mkdir(exist_ok=True)
    password_file = home / "simple_auth_manager_passwords.json.generated"
    if not password_file.exists():
        password_file.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}) + "\n")
    password = json.loads(password_file.read_text())["admin"]
    secrets_file = STATE / "secrets.json"
    if not secrets_file.exists():
        from cryptography.fernet import Fernet

        secrets_file.write_text(
            json.dumps({"jwt": secrets.token_urlsafe(32), "fernet": Fernet.generate_key().decode()})
        )
    keys = json.loads(secrets_file.read_text())

    python = sys.executable
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'plugins'}",
            # `airflow standalone` starts its components as `airflow ...` commands: the venv's must win
            "PATH": f"{Path(python).parent}:{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
            "AIRFLOW__API__PORT": str(airflow_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # Only the runs the demo (or you, in the UI) trigger: the */10 schedule would otherwise add a
            # run for the last tick as soon as Airflow starts. Production keeps the schedule.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            **object_storage_xcom_env(str(STATE / "xcom")),
            "IDC_SYNC_CONFIG": json.dumps({"audit_path": str(STATE / "audit")}),
            **airflow_connection_env(sandbox, airflow_url=airflow_url, airflow_password=password),
        }
    )
    procs: list[subprocess.Popen[bytes]] = []

    def stop() -> None:
        """Stop every process we started *and their descendants*: `airflow standalone`'s scheduler
        and workers can outlive a signal to its process group and would keep the SQLite file open."""
        import psutil

        tree: list[psutil.Process] = []
        for p in reversed(procs):
            try:
                parent = psutil.Process(p.pid)
                tree += [*parent.children(recursive=True), parent]
            except psutil.NoSuchProcess:
                continue
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(tree, timeout=30)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def start(log_name: str, *module_args: str) -> subprocess.Popen[bytes]:
        """``python -m <module_args>`` in its own process group, its output in STATE/<log_name>."""
        with open(STATE / log_name, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [python, "-m", *module_args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        return procs[-1]

    try:
        print(f"starting the sandbox on {sandbox} (log: {STATE}/sandbox.log)")
        proc = start("sandbox.log", "idc_sandbox", "--port", str(sandbox_port), "--seed", "demo")
        wait_for(f"{sandbox}/_health", "the sandbox", 60, proc)
        before = _assignment_keys(sandbox)

        print(f"starting Airflow standalone on {airflow_url} (log: {STATE}/airflow.log)")
        migrate = subprocess.run(
            [python, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise SystemExit(f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
        proc = start("airflow.log", "airflow", "standalone")
        wait_for(f"{airflow_url}/api/v2/monitor/health", "Airflow", 240, proc)
        af = Airflow(airflow_url)
        af.login("admin", password)
        af.wait_for_dag("idc_sync")
        print("triggering idc_sync ...")
        run_id = af.trigger("idc_sync", json.loads(args.conf))
        run = af.wait_for_run("idc_sync", run_id)
        report(sandbox, before, run)
        runs = af("GET", "/dags/idc_sync/dagRuns")["dag_runs"]
        if len(runs) > 1:
            print("\n== All runs ==")
            for r in runs:
                print(f"  {r['dag_run_id']}: {r['state']}  {r.get('note') or ''}")
        failed = [r for r in runs if r["state"] == "failed"]
        if failed:
            run = failed[0]
        if args.keep_running:
            print(f"\nAirflow UI: {airflow_url}  (user admin, password {password})")
            print(f"Sandbox:    {sandbox}  (control API: {sandbox}/_sandbox/...)")
            print("Press Ctrl-C to stop.")
            while all(p.poll() is None for p in procs):
                time.sleep(2)
        return 0 if run["state"] == "success" else 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop()


if __name__ == "__main__":
    raise SystemExit(main())
