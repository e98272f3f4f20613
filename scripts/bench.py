"""Benchmark of the real ``idc_sync`` DAG against the sandbox at the services' real limits (``make bench``).

    PYTHONPATH=include:plugins .venv/bin/python scripts/bench.py --size S|M|L [--outstanding 10|15]
        [--scenarios naive,cold,nochange,churn,policy,drift,parse,plan]

The sandbox runs in its own process (scripts/bench/sandbox_proc.py, 127.0.0.1 only) so its work neither
shares the GIL with the DAG nor counts in the DAG's memory. The DAG runs with ``dag.test()`` in this process
(every param explicit), with a throw-away AIRFLOW_HOME (SQLite) and audit/state folder. Real limits: 20 req/s
per API family (organizations 10), 2 s async latency (the sandbox has one number, not a 1-3 s range), 10 (or
``--outstanding``) outstanding assignment operations, 3 concurrent provisionings. Set-up phases (seeding, the
first full read that fills the caches) run with the limits raised and are reported, not judged.

Prints a table (scenario, figures, target, PASS/FAIL) and writes benchmarks/<size>[-o15]-<date>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import pathlib
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
HERE = pathlib.Path(__file__).resolve().parent / "bench"
PYTHON = sys.executable

# generate_seed: ``permission_sets`` is the MANAGED count; ``unmanaged_permission_sets`` come on top
_SIZE_FIELDS = (
    "accounts",
    "ous",
    "users",
    "groups",
    "permission_sets",
    "unmanaged_permission_sets",
    "assignments",
)
SIZES: dict[str, dict[str, Any]] = {
    name: dict(zip(_SIZE_FIELDS, values, strict=True))
    for name, values in {
        "S": (20, 4, 100, 10, 10, 2, 200),
        "M": (300, 30, 2000, 50, 95, 5, 8000),
        "L": (2000, 60, 10_000, 200, 300, 200, 50_000),
    }.items()
}
ALL_SCENARIOS = ["naive", "cold", "nochange", "churn", "policy", "drift", "parse", "plan"]
CADENCE_MIN = 10
RATE = {"sso-admin": 20.0, "identitystore": 20.0, "organizations": 10.0}
LATENCY = 2.0

# progress goes to the real stdout; Airflow's own output during dag.test goes to a log file
_OUT = os.fdopen(os.dup(1), "w", buffering=1)
_T0 = time.monotonic()


def say(msg: str) -> None:
    _OUT.write(f"[{time.monotonic() - _T0:7.1f}s] {msg}\n")
    _OUT.flush()


# --------------------------------------------------------------------------- environment (before airflow)
def setup_env(work: pathlib.Path) -> None:
    home = work / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    # large XComs by reference, as the README tells production to configure it (the 1 MB target)
    sys.path.insert(0, str(REPO / "include"))
    from idc_sandbox.connections import object_storage_xcom_env

    os.environ.update(object_storage_xcom_env(str(work / "xcom")))
    os.environ["PYTHONPATH"] = f"{REPO / 'include'}:{REPO / 'plugins'}"
    for p in (str(REPO / "include"), str(REPO / "plugins")):
        if p not in sys.path:
            sys.path.insert(0, p)


@contextlib.contextmanager
def redirected(log: pathlib.Path) -> Iterator[None]:
    """fd 1 and 2 into ``log`` (Airflow's dag.test output is long); progress keeps going to _OUT."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# --------------------------------------------------------------------------- sandbox process
class SandboxProc:
    def __init__(self, work: pathlib.Path) -> None:
        from idc_sandbox.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(work / "sandbox.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "sandbox_proc.py"), "--port", str(self.port)],
            stdout=self.log,
            stderr=self.log,
            env=os.environ.copy(),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/_health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("bench sandbox did not start (see sandbox.log)") from None
                time.sleep(0.1)

    def rpc(self, fn: str, **args: Any) -> Any:
        req = urllib.request.Request(
            self.url + "/_bench/rpc",
            data=json.dumps({"fn": fn, "args": args}).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"sandbox rpc {fn}: {err.read().decode()[:2000]}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --------------------------------------------------------------------------- peak RSS per task
_TASK_MEM: list[dict[str, Any]] = []


def _status(field: str, path: str = "/proc/self/status") -> int:
    """A ``kB`` field of a /proc file, in bytes (0 when absent)."""
    with contextlib.suppress(OSError), open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def install_rss_probe() -> None:
    """dag.test runs each task in this process through ``supervisor.run_task_in_process`` (imported at call
    time): wrap it to reset VmHWM ("5" > /proc/self/clear_refs) before a task and read it after."""
    from airflow.sdk.execution_time import supervisor

    original = supervisor.run_task_in_process

    def probed(*args: Any, **kwargs: Any) -> Any:
        ti = kwargs.get("ti") or (args[0] if args else None)
        before = _status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            reset = True
        except OSError:
            reset = False
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _TASK_MEM.append(
                {
                    "task_id": getattr(ti, "task_id", "?"),
                    "try_number": getattr(ti, "try_number", None),
                    "seconds": round(time.perf_counter() - started, 3),
                    "rss_before_bytes": before,
                    "peak_rss_bytes": _status("VmHWM"),
                    "peak_is_per_task": reset,
                }
            )

    supervisor.run_task_in_process = probed


@contextlib.contextmanager
def client_pacing(on: bool) -> Iterator[None]:
    """With the sandbox's limits raised, also lift the DAG's client-side pacing (``aws_clients.DEFAULT_MAX_RPS``,
    read when the clients are built; tasks run in this process), else a set-up phase still crawls at 18 req/s."""
    try:
        from idc_sync import aws_clients
    except ImportError:
        yield
        return
    saved = dict(aws_clients.DEFAULT_MAX_RPS)
    if not on:
        for key in aws_clients.DEFAULT_MAX_RPS:
            aws_clients.DEFAULT_MAX_RPS[key] = 0.0
    try:
        yield
    finally:
        aws_clients.DEFAULT_MAX_RPS.clear()
        aws_clients.DEFAULT_MAX_RPS.update(saved)


# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace, work: pathlib.Path) -> None:
        self.args = args
        self.work = work
        self.size = args.size
        self.outstanding = args.outstanding
        self.results: dict[str, Any] = {}
        self.sb = SandboxProc(work)
        self.db = work / "airflow" / "airflow.db"
        self.audit: pathlib.Path = work / "audit-0"
        self.dag: Any = None
        self.runs = 0

    # ----------------------------------------------------------------- airflow
    def start_airflow(self) -> None:
        say("airflow db migrate ...")
        subprocess.run(
            [PYTHON, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
        )
        with redirected(self.work / "airflow-output.log"):
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")
        self.dag = bag.get_dag("idc_sync")
        install_rss_probe()

    def configure(self, audit: pathlib.Path) -> None:
        """Connections (to the seeded sandbox) and IDC_SYNC_CONFIG for the following runs."""
        from idc_sandbox.connections import connections
        from idc_sandbox.seed import CREDENTIALS

        creds = {
            "kintone_tokens": dict(CREDENTIALS["kintone"]["tokens"]),
            "graph": {
                k: CREDENTIALS["graph"][k]
                for k in ("tenant_id", "client_id", "client_secret", "service_principal_id")
            },
            "slack_webhook_path": CREDENTIALS["slack"]["webhook_path"],
        }
        for conn_id, conn in connections(self.sb.url, creds).items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        self.audit = audit
        audit.mkdir(parents=True, exist_ok=True)
        os.environ["IDC_SYNC_CONFIG"] = json.dumps(
            {"audit_path": str(audit), "assignment_concurrency": self.outstanding}
        )

    def seed(self, label: str) -> dict[str, Any]:
        self.sb.rpc("limits", mode="raised")
        started = time.perf_counter()
        summary = self.sb.rpc("seed", params=SIZES[self.size])
        say(
            f"seeded {self.size} ({label}) in {time.perf_counter() - started:.1f}s: "
            f"{summary['accounts']} accounts, {summary['permission_sets']} permission sets, "
            f"{summary['users']} users, {summary['assignments']} assignments, "
            f"kintone records {summary['kintone_records']}"
        )
        return summary

    # ----------------------------------------------------------------- one DAG run, measured
    def run(self, label: str, limits: str, **params: Any) -> dict[str, Any]:
        self.runs += 1
        self.sb.rpc("limits", mode=limits, outstanding=self.outstanding)
        self.sb.rpc("clear_calls")
        conf = {name: p.value for name, p in self.dag.params.items()}
        conf.update(
            dry_run=False,
            scope_accounts=[],
            scope_permission_sets=[],
            allow_mass_delete=False,
            drift_mode="enforce",
            full_resync=False,
            adopt_permission_sets=[],
            skip_scim_check=True,
        )
        conf.update(params)
        files_before = _files(self._object_dirs())
        del _TASK_MEM[:]
        say(f"run {self.runs} [{label}] limits={limits} ...")
        started = time.perf_counter()
        with redirected(self.work / "airflow-output.log"), client_pacing(limits == "real"):
            dr = self.dag.test(run_conf=conf)
        wall = time.perf_counter() - started
        self.sb.rpc("settle")
        calls = self.sb.rpc("stats", latency=LATENCY if limits == "real" else 0.0)
        run_id = getattr(dr, "run_id", None)
        tis = self._task_instances(run_id)
        xcom = self._xcom(run_id)
        written = _written(files_before, _files(self._object_dirs()))
        out = {
            "label": label,
            "limits": limits,
            "run_id": run_id,
            "state": str(getattr(dr, "state", "?")),
            "wall_s": round(wall, 2),
            "calls": calls,
            "idc_calls": calls["totals"].get("sso-admin", 0) + calls["totals"].get("identitystore", 0),
            "organizations_calls": calls["totals"].get("organizations", 0),
            "kintone_requests": calls["totals"].get("kintone", 0),
            "xcom_db_bytes": sum(x["bytes"] for x in xcom),
            "xcom": xcom,
            "object_store_bytes_written": written,
            "task_instances": tis,
            "task_memory": list(_TASK_MEM),
            "compute_diff_s": next(
                (t["duration_s"] for t in tis if "diff" in t["task_id"] and t["duration_s"] is not None), None
            ),
        }
        failed = [t["task_id"] for t in tis if t["state"] not in ("success", "skipped")]
        say(
            f"   -> {out['state']} in {wall:.1f}s; IdC calls {out['idc_calls']} (orgs {out['organizations_calls']}), "
            f"kintone {out['kintone_requests']}, XCom {out['xcom_db_bytes']:,} B, object store {written:,} B"
            + (f"; not successful: {failed}" if failed else "")
        )
        return out

    def _object_dirs(self) -> list[pathlib.Path]:
        dirs = [self.audit]
        xcom_path = os.environ.get("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH", "")
        if xcom_path.startswith("file://"):
            dirs.append(pathlib.Path(xcom_path[len("file://") :]))
        return dirs

    def _sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as con:
            return con.execute(query, args).fetchall()

    def _task_instances(self, run_id: str | None) -> list[dict[str, Any]]:
        rows = self._sql(
            "SELECT task_id, state, duration, try_number, start_date, end_date FROM task_instance "
            "WHERE dag_id='idc_sync' AND run_id=? ORDER BY start_date",
            run_id,
        )
        return [
            {
                "task_id": r[0],
                "state": r[1],
                "duration_s": None if r[2] is None else round(float(r[2]), 3),
                "try_number": r[3],
            }
            for r in rows
        ]

    def _xcom(self, run_id: str | None) -> list[dict[str, Any]]:
        rows = self._sql(
            "SELECT task_id, key, length(CAST(value AS BLOB)) FROM xcom WHERE dag_id='idc_sync' AND run_id=?",
            run_id,
        )
        return [{"task_id": r[0], "key": r[1], "bytes": int(r[2] or 0)} for r in rows]

    def xcom_values(self, run_id: str) -> list[tuple[str, str, Any]]:
        out = []
        for task_id, key, value in self._sql(
            "SELECT task_id, key, value FROM xcom WHERE dag_id='idc_sync' AND run_id=?", run_id
        ):
            try:
                out.append((task_id, key, json.loads(value)))
            except (TypeError, ValueError):
                continue
        return out

    # ----------------------------------------------------------------- scenarios
    def naive(self) -> None:
        """The old per-run cost: take_snapshot(clients, None, SyncConfig(), None) reads everything."""
        import boto3

        from idc_sync.aws_clients import IdcClients
        from idc_sync.config import SyncConfig
        from idc_sync.snapshot import take_snapshot

        self.seed("naive full scan")
        self.sb.rpc("limits", mode="raised")
        self.sb.rpc("clear_calls")
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        clients = IdcClients.from_session(
            session,
            endpoint_url=self.sb.url,
            max_rps={k: 0 for k in RATE | {"sso_admin": 0, "iam": 0, "accessanalyzer": 0}},
        )
        say("naive full scan (take_snapshot, limits raised) ...")
        started = time.perf_counter()
        with redirected(self.work / "airflow-output.log"):
            observed = take_snapshot(clients, None, SyncConfig(), None)
        seconds = time.perf_counter() - started
        calls = self.sb.rpc("stats", latency=0.0)
        t = calls["totals"]
        implied = max(t.get(s, 0) / r for s, r in RATE.items())
        (self.work / "naive_observed.json").write_text(observed.model_dump_json())
        self.results["naive"] = {
            "seconds_raised": round(seconds, 2),
            "calls": calls,
            "idc_calls": t.get("sso-admin", 0) + t.get("identitystore", 0),
            "organizations_calls": t.get("organizations", 0),
            "implied_s_at_limits": round(implied, 1),
            "note": "implied time = max over API families of calls / family rate (sso-admin and identitystore "
            "20/s, organizations 10/s); families run in parallel",
        }
        say(
            f"   -> {self.results['naive']['idc_calls']} IdC calls (+{t.get('organizations', 0)} organizations); "
            f"implied {implied:.0f}s at the limits ({seconds:.1f}s raised)"
        )

    def cold(self) -> None:
        self.seed("cold sync")
        removed = self.sb.rpc("make_cold")
        say(f"cold: removed {removed['removed']} managed assignments from IdC (kintone keeps its records)")
        self.configure(self.work / f"audit-cold-o{self.outstanding}")
        setup = self.run("cold set-up: dry run, fills the caches", "raised", dry_run=True)
        res: dict[str, Any] = {"removed": removed["removed"], "setup_dry_run": setup, "runs": []}
        target_runs = self.args.cold_runs
        new_record = None
        for i in range(1, 1000):
            if i == 2:
                new_record = self.sb.rpc("add_assignment_record")
                say(f"cold: added kintone assignment record {new_record['record']} before run 2")
            r = self.run(f"cold sync run {i}", "real")
            w = self.sb.rpc("world_summary")
            r["managed_assignments_after"] = w["managed_assignments"]
            ops = r["calls"]["assignment_ops_ok"]
            polls = r["calls"]["assignment_status_polls_ok"]
            window = r["calls"]["assignment_ops_window_s"]
            r["throughput_ops_s"] = round(ops / window, 3) if window else 0.0
            r["throughput_ops_s_over_wall"] = round(ops / r["wall_s"], 3) if r["wall_s"] else 0.0
            r["polls_per_op"] = round(polls / ops, 2) if ops else None
            if i == 2 and new_record:
                r["new_record"] = self.sb.rpc("check", present=new_record["present"], absent=[])
                say(f"   new record served in run 2: {r['new_record']['done']}")
            res["runs"].append(r)
            say(
                f"   cold run {i}: {ops} assignment ops in a {window:.0f}s window = {r['throughput_ops_s']} ops/s; "
                f"managed assignments now {w['managed_assignments']}"
            )
            done = w["managed_assignments"] >= SIZES[self.size]["assignments"] + 1
            if i >= target_runs and (
                not self.args.cold_to_completion or done or i >= self.args.cold_max_runs
            ):
                res["completed"] = done
                break
        # the limit-bound rate: outstanding operations / latency, or what the request rate leaves when each
        # operation also needs at least one status poll (20 req/s / 2 calls), whichever is lower
        res["limit_bound_ops_s"] = min(self.outstanding / LATENCY, RATE["sso-admin"] / 2)
        # runs that had a real backlog (at least 4x the outstanding limit of operations): ops / summed windows
        busy = [r for r in res["runs"] if r["calls"]["assignment_ops_ok"] >= 4 * self.outstanding]
        ops = sum(r["calls"]["assignment_ops_ok"] for r in busy)
        windows = sum(r["calls"]["assignment_ops_window_s"] for r in busy)
        res["throughput_ops_s"] = round(ops / windows, 3) if windows else 0.0
        res["throughput_runs"] = len(busy)
        res["new_record_served_in_run_2"] = bool(
            len(res["runs"]) >= 2 and res["runs"][1].get("new_record", {}).get("done")
        )
        self.results["cold"] = res

    def steady(self, scenarios: list[str]) -> None:
        """Seed in steady state; a full read with limits raised fills the caches (the full_resync cost);
        then nochange / churn / policy / drift at real limits, in this order, on the same world."""
        self.seed("steady state")
        self.configure(self.work / "audit-steady")
        setup = self.run("set-up: first full read (fills the caches)", "raised")
        self.results["full_resync"] = {
            "idc_calls": setup["idc_calls"],
            "organizations_calls": setup["organizations_calls"],
            "kintone_requests": setup["kintone_requests"],
            "kintone_by_app": setup["calls"]["kintone_by_app"],
            "implied_s_at_limits": round(
                max(setup["calls"]["totals"].get(s, 0) / r for s, r in RATE.items()), 1
            ),
            "run": setup,
        }
        if "nochange" in scenarios or "plan" in scenarios:
            r = self.run("no-change", "real")
            self.results["nochange"] = r
            if "plan" in scenarios:
                self.plan_alone(r["run_id"])
        if "churn" in scenarios:
            ch = self.sb.rpc("churn", ratio=0.01)
            say(
                f"churn: {ch['added']} added, {ch['edited']} edited, {ch['deleted']} deleted records; "
                f"expect {len(ch['present'])} present / {len(ch['absent'])} gone"
            )
            # 1% of the records at once deletes ~170 assignments: beyond the deletion guard's default 20,
            # which would ask a human (measured elsewhere). Pre-approved here, as an admin would for a
            # planned batch, so the run's own speed is what is measured.
            r = self.run("1% churn", "real", allow_mass_delete=True)
            r["outcome"] = self.sb.rpc("check", present=ch["present"], absent=ch["absent"])
            r["churn"] = {k: ch[k] for k in ("added", "edited", "deleted")}
            say(f"   churn applied in the same run: {r['outcome']}")
            self.results["churn"] = r
        if "policy" in scenarios:
            ed = self.sb.rpc("edit_policy")
            say(f"policy: {ed['permission_set']} gets {ed['policy']} in kintone ({ed['accounts']} accounts)")
            r = self.run("permission set policy edit", "real")
            r["edit"] = ed
            r["outcome"] = self.sb.rpc("check_policy", arn=ed["arn"], policy=ed["policy"])
            say(f"   policy: {r['outcome']}")
            self.results["policy"] = r
        if "drift" in scenarios:
            self.drift()

    def drift(self) -> None:
        import boto3

        tgt = self.sb.rpc("handmade_targets")
        sso = boto3.client(
            "sso-admin",
            endpoint_url=self.sb.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.sb.rpc("limits", mode="raised")
        acct, arn, ptype, pid = tgt["assignment"]
        sso.create_account_assignment(
            InstanceArn=tgt["instance_arn"],
            TargetId=acct,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=arn,
            PrincipalType=ptype,
            PrincipalId=pid,
        )
        sso.attach_managed_policy_to_permission_set(
            InstanceArn=tgt["instance_arn"],
            PermissionSetArn=tgt["policy_ps_arn"],
            ManagedPolicyArn=tgt["policy_arn"],
        )
        time.sleep(0.2)
        self.sb.rpc("settle")
        state = self.sb.rpc(
            "check_handmade",
            assignment=tgt["assignment"],
            policy_ps_arn=tgt["policy_ps_arn"],
            policy_arn=tgt["policy_arn"],
        )
        say(
            f"drift: hand-made assignment on {acct} and {tgt['policy_arn']} on {tgt['policy_ps_name']}: {state}"
        )
        from idc_sync.config import SyncConfig

        cfg = SyncConfig()
        max_runs = (
            self.args.drift_max_runs or math.ceil(cfg.sweep_period_minutes / cfg.run_cadence_minutes) + 3
        )
        res: dict[str, Any] = {
            "targets": tgt,
            "runs": [],
            "assignment_reverted_run": None,
            "policy_reverted_run": None,
            "raised_after_first": self.args.drift_raised,
        }
        for i in range(1, max_runs + 1):
            limits = "real" if i == 1 or not self.args.drift_raised else "raised"
            r = self.run(f"drift run {i}", limits)
            st = self.sb.rpc(
                "check_handmade",
                assignment=tgt["assignment"],
                policy_ps_arn=tgt["policy_ps_arn"],
                policy_arn=tgt["policy_arn"],
            )
            res["runs"].append(
                {
                    k: r[k]
                    for k in (
                        "wall_s",
                        "idc_calls",
                        "organizations_calls",
                        "kintone_requests",
                        "xcom_db_bytes",
                        "state",
                        "limits",
                    )
                }
                | {"after": st}
            )
            if i == 1:
                res["first_run"] = r
            if not st["assignment_present"] and res["assignment_reverted_run"] is None:
                res["assignment_reverted_run"] = i
            if not st["policy_attached"] and res["policy_reverted_run"] is None:
                res["policy_reverted_run"] = i
            if res["assignment_reverted_run"] and res["policy_reverted_run"]:
                break
        worst = max(res["assignment_reverted_run"] or math.inf, res["policy_reverted_run"] or math.inf)
        res["runs_until_reverted"] = None if worst == math.inf else worst
        res["implied_period_h"] = None if worst == math.inf else round(worst * CADENCE_MIN / 60, 2)
        say(
            f"   drift: assignment reverted in run {res['assignment_reverted_run']}, "
            f"policy in run {res['policy_reverted_run']} (max {max_runs})"
        )
        self.results["drift"] = res

    def plan_alone(self, run_id: str) -> None:
        from idc_sync.audit import AuditStore
        from idc_sync.model import DesiredState, ObservedState
        from idc_sync_airflow import state_refs

        values = {task: value for task, key, value in self.xcom_values(run_id) if key == "return_value"}
        store = AuditStore(str(self.audit))
        desired = observed = None
        try:
            if state_refs.is_ref(values.get("extract_kintone")):
                desired = state_refs.get(store, values["extract_kintone"], DesiredState).model_dump(
                    mode="json"
                )
            out = values.get("observe_idc")
            if isinstance(out, dict) and state_refs.is_ref(out.get("observed")):
                observed = state_refs.get(store, out["observed"], ObservedState).model_dump(mode="json")
        except Exception as exc:  # the refs of a run are kept two days; report, never stop the bench
            say(f"   compute_plan alone: could not read the run's states ({exc})")
        source = "xcom of the no-change run"
        if desired is None or observed is None:
            self.results["plan"] = {
                "error": "desired/observed not found in the run's XComs (stored elsewhere?)"
            }
            say("   compute_plan alone: inputs not found in XCom; skipped")
            return
        d, o = self.work / "desired.json", self.work / "observed.json"
        d.write_text(json.dumps(desired))
        o.write_text(json.dumps(observed))
        p = subprocess.run(
            [PYTHON, str(HERE / "plan_alone.py"), str(d), str(o), os.environ["IDC_SYNC_CONFIG"]],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        if p.returncode:
            self.results["plan"] = {"error": p.stderr[-2000:]}
            say(f"   compute_plan alone failed: {p.stderr[-300:]}")
            return
        self.results["plan"] = json.loads(p.stdout.strip().splitlines()[-1]) | {"inputs": source}
        say(
            f"   compute_plan alone: {self.results['plan']['seconds']}s, "
            f"peak RSS {self.results['plan']['peak_rss_bytes'] / 2**20:.0f} MiB"
        )

    def parse(self) -> None:
        dags = repr(str(REPO / "dags"))
        code = (
            "import time,json,statistics\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            "ts=[]\n"
            "for i in range(6):\n"
            f"    t=time.perf_counter(); b=DagBag(dag_folder={dags}); ts.append(time.perf_counter()-t)\n"
            "    assert not b.import_errors, b.import_errors\n"
            "print(json.dumps({'first_s': ts[0], 'median_s': statistics.median(ts[1:]), 'all_s': ts}))\n"
        )
        p = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=os.environ.copy())
        if p.returncode:
            self.results["parse"] = {"error": p.stderr[-2000:]}
            return
        self.results["parse"] = json.loads(p.stdout.strip().splitlines()[-1])
        say(
            f"DAG parse: median {self.results['parse']['median_s']:.3f}s (first {self.results['parse']['first_s']:.3f}s)"
        )


# --------------------------------------------------------------------------- files written
def _files(dirs: list[pathlib.Path]) -> dict[str, tuple[int, int]]:
    out = {}
    for d in dirs:
        if d.exists():
            for p in d.rglob("*"):
                if p.is_file():
                    st = p.stat()
                    out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(size for path, (size, mtime) in after.items() if before.get(path, (None, None))[1] != mtime)


# --------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    import airflow

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    mem = _status("MemTotal", "/proc/meminfo")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "cpu_model": cpu,
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "git_commit": commit,
        "git_dirty": bool(dirty),
        "platform": platform.platform(),
    }


def kintone_daily(results: dict[str, Any]) -> dict[str, Any] | None:
    """Per-run requests of the no-change run x 144, plus the periodic id pass (``kintone_id_pass_minutes``),
    each charged as a full read."""
    nc = results.get("nochange")
    if not nc:
        return None
    from idc_sync.config import SyncConfig

    per_day_runs = 24 * 60 // CADENCE_MIN
    # the periodic id pass lists every record id (pages of 500 ids); charged as a full read (conservative)
    extra_period = ("kintone_id_pass_minutes", float(SyncConfig().kintone_id_pass_minutes))
    full = dict(results.get("full_resync", {}).get("kintone_by_app", {}))
    counts = dict(nc["calls"]["kintone_by_app"])
    # requests without an app parameter (cursor GET/DELETE by id) are charged to every app: conservative
    unattributed, full_unattributed = counts.pop("-", 0), full.pop("-", 0)
    by_app = {}
    for app, n in counts.items():
        day = (n + unattributed) * per_day_runs
        if extra_period:
            day += (full.get(app, 0) + full_unattributed) * (24 * 60 / extra_period[1])
        by_app[app] = {"per_run": n + unattributed, "per_day": round(day)}
    return {
        "by_app": by_app,
        "unattributed_per_run": unattributed,
        "periodic_pass": extra_period,
        "runs_per_day": per_day_runs,
        "note": "requests without an app parameter (cursor reads by id) are counted for every app",
    }


def verdicts(size: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(scenario, figures, target, PASS/FAIL/-) rows; targets are judged at L, reported elsewhere."""
    rows: list[tuple[str, str, str, str]] = []
    judge = size == "L"

    def v(ok: bool | None) -> str:
        if ok is None:
            return "n/a"
        return ("PASS" if ok else "FAIL") if judge else ("pass" if ok else "fail") + " (info)"

    naive = r.get("naive")
    nc = r.get("nochange")
    if "full_resync" in r:
        f = r["full_resync"]
        rows.append(
            (
                "full_resync (set-up, raised)",
                f"{f['idc_calls']} IdC calls + {f['organizations_calls']} "
                f"orgs; implied {f['implied_s_at_limits']}s at limits; run {f['run']['wall_s']}s",
                "-",
                "-",
            )
        )
    if naive:
        rows.append(
            (
                "naive full scan (raised)",
                f"{naive['idc_calls']} IdC + {naive['organizations_calls']} orgs "
                f"calls; implied {naive['implied_s_at_limits']}s at limits",
                "-",
                "-",
            )
        )
    if nc:
        rows.append(
            ("no-change: wall", f"{nc['wall_s']}s ({nc['state']})", "<= 120 s", v(nc["wall_s"] <= 120))
        )
        rows.append(
            (
                "no-change: IdC calls",
                f"{nc['idc_calls']} (sso-admin+identitystore); orgs {nc['organizations_calls']}",
                "<= 2,400",
                v(nc["idc_calls"] <= 2400),
            )
        )
        if naive:
            ratio = naive["idc_calls"] / max(1, nc["idc_calls"])
            nc["naive_ratio"] = round(ratio, 1)
            rows.append(("HEADLINE naive / no-change calls", f"{ratio:.1f}x", ">= 20x", v(ratio >= 20)))
        rows.append(
            ("no-change: XCom", f"{nc['xcom_db_bytes']:,} B", "<= 1 MB", v(nc["xcom_db_bytes"] <= 1_000_000))
        )
        rows.append(("no-change: object store", f"{nc['object_store_bytes_written']:,} B", "-", "-"))
        if nc["compute_diff_s"] is not None:
            rows.append(
                (
                    "no-change: compute_diff task",
                    f"{nc['compute_diff_s']}s",
                    "<= 5 s",
                    v(nc["compute_diff_s"] <= 5),
                )
            )
        peak = max((t["peak_rss_bytes"] for t in nc["task_memory"]), default=0)
        rows.append(("no-change: peak RSS (max task)", f"{peak / 2**20:.0f} MiB", "-", "-"))
    kd = kintone_daily(r)
    if kd:
        worst = max((a["per_day"] for a in kd["by_app"].values()), default=0)
        figs = ", ".join(
            f"app {k}: {a['per_run']}/run -> {a['per_day']}/day" for k, a in sorted(kd["by_app"].items())
        )
        rows.append(("kintone requests per app per day", figs or "0", "<= 2,500", v(worst <= 2500)))
    ch = r.get("churn")
    if ch:
        done = ch["outcome"]["done"]
        rows.append(
            (
                "1% churn: applied in the same run",
                f"{done} (missing {ch['outcome']['missing']}, lingering {ch['outcome']['lingering']})",
                "yes",
                v(done),
            )
        )
        rows.append(
            (
                "1% churn: wall",
                f"{ch['wall_s']}s; IdC {ch['idc_calls']} calls",
                "<= 180 s",
                v(ch["wall_s"] <= 180),
            )
        )
        rows.append(
            ("1% churn: XCom", f"{ch['xcom_db_bytes']:,} B", "<= 1 MB", v(ch["xcom_db_bytes"] <= 1_000_000))
        )
    po = r.get("policy")
    if po:
        rows.append(
            (
                "policy edit -> re-provisioned",
                f"{po['outcome']['done']} ({po['edit']['accounts']} accounts, "
                f"{po['outcome']['stale']} stale); {po['wall_s']}s; IdC {po['idc_calls']} calls",
                "-",
                v(po["outcome"]["done"]),
            )
        )
    co = r.get("cold")
    if co:
        thr, bound = co["throughput_ops_s"], co["limit_bound_ops_s"]
        rows.append(
            (
                "cold sync throughput",
                f"{thr} ops/s vs limit-bound {bound} ops/s ({len(co['runs'])} runs)",
                ">= 80%",
                v(thr >= 0.8 * bound),
            )
        )
        rows.append(
            (
                "cold sync: new record served in run 2",
                str(co["new_record_served_in_run_2"]),
                "yes",
                v(co["new_record_served_in_run_2"]),
            )
        )
    dr = r.get("drift")
    if dr:
        period = dr["implied_period_h"]
        rows.append(
            (
                "drift reverted (hand-made assignment + policy)",
                f"assignment run {dr['assignment_reverted_run']}, policy run {dr['policy_reverted_run']}; "
                f"period {period} h"
                + (" (runs after the 1st with raised limits)" if dr["raised_after_first"] else ""),
                "<= 6 h",
                v(period is not None and period <= 6),
            )
        )
    pl = r.get("plan")
    if pl and "seconds" in pl:
        rows.append(
            (
                "compute_plan alone",
                f"{pl['seconds']}s, peak RSS {pl['peak_rss_bytes'] / 2**20:.0f} MiB",
                "<= 5 s, <= 1 GiB",
                v(pl["seconds"] <= 5 and pl["peak_rss_bytes"] <= 2**30),
            )
        )
    elif pl:
        rows.append(
            ("compute_plan alone", "not measured: " + pl.get("error", "")[:80], "<= 5 s, <= 1 GiB", "n/a")
        )
    pa = r.get("parse")
    if pa and "median_s" in pa:
        rows.append(("DAG parse (median)", f"{pa['median_s']:.3f}s", "<= 0.5 s", v(pa["median_s"] <= 0.5)))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    w = [max(len(row[i]) for row in [*rows, ("scenario", "figures", "target", "verdict")]) for i in range(4)]
    w[1] = min(w[1], 90)
    line = "  ".join(f"{{:{n}}}" for n in w)
    _OUT.write("\n" + line.format("scenario", "figures", "target", "verdict") + "\n")
    _OUT.write("  ".join("-" * n for n in w) + "\n")
    for row in rows:
        _OUT.write(line.format(*row) + "\n")
    _OUT.flush()


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="S")
    parser.add_argument("--outstanding", type=int, choices=[10, 15], default=10)
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}",
    )
    parser.add_argument("--cold-runs", type=int, default=3, help="cold sync runs measured (default 3)")
    parser.add_argument(
        "--cold-to-completion",
        action="store_true",
        help="keep running the cold sync until IdC has every assignment (default at S and M)",
    )
    parser.add_argument("--no-cold-to-completion", dest="cold_to_completion_off", action="store_true")
    parser.add_argument("--cold-max-runs", type=int, default=40)
    parser.add_argument("--drift-max-runs", type=int, default=0, help="default: sweep period / cadence + 3")
    parser.add_argument(
        "--drift-real-limits",
        dest="drift_raised",
        action="store_false",
        help="keep the real limits for every drift run (default: raised after the first)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args()
    if args.size in ("S", "M") and not args.cold_to_completion_off:
        args.cold_to_completion = True
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")

    work = pathlib.Path(tempfile.mkdtemp(prefix=f"idc-bench-{args.size}-"))
    setup_env(work)
    say(
        f"bench size {args.size} ({SIZES[args.size]}), outstanding {args.outstanding}, scenarios {scenarios}; "
        f"work folder {work} (Airflow output: airflow-output.log)"
    )
    bench = Bench(args, work)
    started = dt.datetime.now(dt.UTC)
    try:
        if any(s in scenarios for s in ("cold", "nochange", "churn", "policy", "drift", "plan")):
            bench.start_airflow()
        if "parse" in scenarios:
            bench.parse()
        if "naive" in scenarios:
            bench.naive()
        if "cold" in scenarios:
            bench.cold()
        steady = [s for s in ("nochange", "churn", "policy", "drift", "plan") if s in scenarios]
        if steady:
            bench.steady(steady)
    except KeyboardInterrupt:
        say("interrupted: reporting what was measured")
    except Exception as exc:  # report what was measured so far
        import traceback

        bench.results["error"] = traceback.format_exc()
        say(f"ERROR: {exc!r} (reporting what was measured)")
    finally:
        bench.sb.stop()
    results = bench.results
    rows = verdicts(args.size, results)
    print_table(rows)
    if args.size != "L":
        _OUT.write("(targets are set for L; at this size verdicts are informative)\n")
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.outstanding == 10 else f"-o{args.outstanding}"
    path = out_dir / f"{args.size}{suffix}-{started.strftime('%Y-%m-%d')}.json"
    doc = {
        "size": args.size,
        "seed_params": SIZES[args.size],
        "outstanding": args.outstanding,
        "scenarios": scenarios,
        "started": started.isoformat(),
        "duration_s": round(time.monotonic() - _T0, 1),
        "limits": {
            "rate_limits": RATE | {"iam": 20.0, "accessanalyzer": 10.0},
            "async_latency_s": LATENCY,
            "max_outstanding_assignment_ops": args.outstanding,
            "max_concurrent_provisioning": 3,
            "note": "sandbox async latency is a single number: 2 s used for AWS's 1-3 s",
        },
        "machine": machine(),
        "kintone_daily": kintone_daily(results),
        "verdicts": [
            dict(zip(("scenario", "figures", "target", "verdict"), row, strict=True)) for row in rows
        ],
        "results": results,
    }
    path.write_text(json.dumps(doc, indent=1, default=str))
    say(f"wrote {path}")
    if args.keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
