"""`make demo`: the whole product on one machine, end to end, through the real Airflow scheduler.

1. starts the sandbox (kintone, IdC, Organizations, Entra, Slack emulators) seeded with the demo org;
2. starts Airflow in the `airflow standalone` layout (SQLite, LocalExecutor; api-server, scheduler,
   dag-processor, triggerer), one component at a time so that every one of them binds on 127.0.0.1 only,
   with connections pointing at the sandbox;
3. triggers `idc_sync` through the REST API and waits for it;
4. prints what changed in IAM Identity Center, the kintone comments and the Slack message;
5. exits non-zero when the run failed. `--keep-running` leaves everything up for the UI.

Built to survive a slow laptop: status polls are retried (a slow answer is not a failure), a failure is one
line naming the logs (the traceback goes to a file), Ctrl-C and SIGTERM stop the whole process tree, and
the LocalExecutor runs at most four tasks at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

import requests
import tenacity

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins")]

from idc_sandbox.connections import airflow_connection_env, object_storage_xcom_env  # noqa: E402
from idc_sync_airflow.airflow_api import AirflowApi, AirflowApiError  # noqa: E402

STATE = REPO / ".demo"
LOGS = STATE / "logs"
LOCAL = "127.0.0.1"
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
# Airflow 3.3's log servers (scheduler with LocalExecutor: [logging] worker_log_server_port, triggerer:
# trigger_log_server_port) bind every interface and have no host setting. On one machine they are not
# needed: the api-server reads task logs from the same $AIRFLOW_HOME/logs. So the demo does not start them.
COMPONENT_ARGS: dict[str, tuple[str, ...]] = {
    "scheduler": ("--skip-serve-logs",),
    "triggerer": ("--skip-serve-logs",),
}
MAX_PARALLELISM = 4  # `airflow standalone` would start 32 LocalExecutor workers
POLL_ATTEMPTS = 6  # one status poll: up to 6 tries over ~1 min of back-off (+ the request timeouts)
SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

T = TypeVar("T")


class DemoError(Exception):
    """Something the person running the demo can act on, said in one line."""


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: unwinds the demo so that its ``finally`` stops every process it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- configuration
def demo_parallelism(cpus: int | None) -> int:
    """LocalExecutor workers: one per core, at most MAX_PARALLELISM (SQLite serialises writes anyway)."""
    return max(1, min(MAX_PARALLELISM, cpus or 1))


def available_cpus() -> int:
    """Cores this process may use (a container's CPU set, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def demo_env(
    base: Mapping[str, str],
    *,
    python: str,
    state: Path,
    sandbox_url: str,
    airflow_port: int,
    keys: Mapping[str, str],
    password: str,
    cpus: int,
    schedule: bool = False,
) -> dict[str, str]:
    """The environment of every process the demo starts: Airflow on 127.0.0.1 only, connections to the
    sandbox. Inherited ``AIRFLOW*`` variables are dropped so that a shell's own Airflow settings cannot
    point the demo at another database or executor."""
    airflow_url = f"http://{LOCAL}:{airflow_port}"
    env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'plugins'}",
            # Airflow starts task processes as `airflow ...` commands: the venv's must win
            "PATH": f"{Path(python).parent}:{base.get('PATH', '')}",
            "AIRFLOW_HOME": str(state / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(demo_parallelism(cpus)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
            "AIRFLOW__API__HOST": LOCAL,
            "AIRFLOW__API__PORT": str(airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": airflow_url,  # links in kintone comments and Slack
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # `make demo`: only the run it triggers (the */10 schedule would add a run for the last tick as
            # soon as Airflow starts). `make demo-up` keeps the schedule, as production does, so the UI's
            # "Next Run" is a real next tick, not a time in the past that never comes.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule),
            **object_storage_xcom_env(str(state / "xcom")),
            "IDC_SYNC_CONFIG": json.dumps({"audit_path": str(state / "audit")}),
            **airflow_connection_env(sandbox_url, airflow_url=airflow_url, airflow_password=password),
        }
    )
    return env


def component_command(python: str, component: str) -> list[str]:
    return [python, "-m", "airflow", component, *COMPONENT_ARGS.get(component, ())]


def port_in_use(port: int, host: str = LOCAL) -> bool:
    """True when ``host:port`` cannot be bound (checked the way uvicorn binds, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------- patience with slow answers
def transient(exc: BaseException) -> bool:
    """A slow or briefly unavailable server (timeout, refused or reset connection, HTTP 5xx or 429):
    worth another try. A 4xx answer is an answer."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    response = getattr(exc, "response", None)
    return (
        isinstance(exc, requests.HTTPError)
        and response is not None
        and (response.status_code >= 500 or response.status_code == 429)
    )


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def patiently(
    call: Callable[[], T],
    what: str,
    *,
    attempts: int = POLL_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> T:
    """``call()``, tried again with exponential back-off while it fails transiently (``transient``)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=2, max=30),
        sleep=sleep,
        reraise=True,
        before_sleep=lambda state: say(
            f"  ({what}: {type(state.outcome.exception()).__name__ if state.outcome else '?'}, trying again)"
        ),
    )
    return retrying(call)


class Airflow(AirflowApi):
    """The REST API as the demo's admin: every GET (a status poll) is retried on a slow answer; a POST
    (trigger) is not, so a slow answer never triggers a second run."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = print,
    ) -> None:
        super().__init__(url, timeout=timeout)
        self.sleep = sleep
        self.say = say

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        if method.upper() != "GET":
            return AirflowApi.__call__(self, method, path, **kwargs)
        return patiently(
            lambda: AirflowApi.__call__(self, method, path, **kwargs),
            f"GET {path}",
            sleep=self.sleep,
            say=self.say,
        )

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        """Polls the run until it ends, printing the task states when they change."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            run = self("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            line = ", ".join(
                f"{task}={state}" for task, state in self.task_states(dag_id, run_id).items() if state
            )
            if line != last:
                self.say(f"  {line}")
                last = line
            if run["state"] in ("success", "failed"):
                return dict(run)
            self.sleep(3)
        raise DemoError(
            f"run {run_id} did not finish within {timeout:.0f} s (task logs: {STATE}/airflow/logs)"
        )


# --------------------------------------------------------------------------- processes
class ProcessTree:
    """The processes the demo starts, each in its own process group (session), with its log in ``logs``."""

    def __init__(self, env: Mapping[str, str], logs: Path, *, grace: float = 20.0) -> None:
        self.env = dict(env)
        self.logs = logs
        self.grace = grace  # how long stop() lets the processes end on SIGTERM before SIGKILL
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches only the demo, which stops the rest
            )
        return self.procs[name]

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with code {proc.returncode}: see {self.log_of(name)}")

    def stop(self, grace: float | None = None) -> None:
        """Ends every process started here *and all their descendants*: SIGTERM to each process group
        and to every descendant (one may have left the group), SIGKILL to what is left after ``grace``."""
        import psutil

        tree: list[psutil.Process] = []
        for proc in self.procs.values():
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(proc.pid)
                tree += [*parent.children(recursive=True), parent]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in self.procs.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
            for member in tree:
                with contextlib.suppress(psutil.Error):
                    member.send_signal(sig)
            wait = (self.grace if grace is None else grace) if sig == signal.SIGTERM else 10
            _, tree = psutil.wait_procs(tree, timeout=wait)
            if not tree:
                break
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@contextlib.contextmanager
def process_tree(env: Mapping[str, str], logs: Path, *, grace: float = 20.0) -> Iterator[ProcessTree]:
    """A :class:`ProcessTree` whose processes are all ended on the way out, however it is left."""
    tree = ProcessTree(env, logs, grace=grace)
    try:
        yield tree
    finally:
        with signals_ignored():
            if tree.procs:
                print(f"stopping {', '.join(tree.procs)} ...", file=sys.stderr, flush=True)
            tree.stop()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: Ctrl-C (SIGINT) and SIGTERM raise :class:`Stopped`, so the demo's ``finally`` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signum)

    old = {sig: signal.signal(sig, handler) for sig in SIGNAL_NAMES}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While the tree is being stopped, a second Ctrl-C must not abandon it half-way."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNAL_NAMES}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def friendly(body: Callable[[], int], *, logs: Path, err: TextIO | None = None) -> int:
    """``body()``'s exit code; a failure becomes one line on stderr naming the logs (the traceback of an
    unexpected error goes to ``logs/demo-error.log``), Ctrl-C/SIGTERM the usual 128 + signal number."""
    err = err or sys.stderr
    try:
        return body()
    except Stopped as stop:
        print(
            f"stopped ({SIGNAL_NAMES.get(stop.signum, str(stop.signum))}); everything the demo started is ended",
            file=err,
        )
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except DemoError as exc:
        print(f"demo failed: {one_line(exc)}", file=err)
        return 1
    except Exception as exc:
        trace = logs / "demo-error.log"
        with contextlib.suppress(OSError):
            logs.mkdir(parents=True, exist_ok=True)
            trace.write_text(traceback.format_exc())
        print(
            f"demo failed: {type(exc).__name__}: {one_line(exc)} (traceback: {trace}; logs: {logs}/)",
            file=err,
        )
        return 1


def supervised(body: Callable[[], int], *, logs: Path, err: TextIO | None = None) -> int:
    """How the demo runs ``body``: Ctrl-C and SIGTERM unwind it (its ``process_tree`` ends everything),
    any failure is one line (:func:`friendly`)."""

    def guarded() -> int:
        with stop_on_signals():
            return body()

    return friendly(guarded, logs=logs, err=err)


def wait_until(
    what: str,
    timeout: float,
    probe: Callable[[], Any],
    tree: ProcessTree,
    *,
    hint: str,
    every: float = 2.0,
) -> Any:
    """``probe()`` until it returns something truthy (a failing probe counts as not yet); a component
    that exits, or the timeout, is a DemoError naming ``hint`` (where to look)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree.check_alive()
        with contextlib.suppress(requests.RequestException):
            if value := probe():
                return value
        time.sleep(every)
    raise DemoError(f"{what} did not happen within {timeout:.0f} s: see {hint}")


# --------------------------------------------------------------------------- what the run changed
def _get(sandbox: str, path: str) -> Any:
    def call() -> Any:
        resp = requests.get(f"{sandbox}/_sandbox/{path}", timeout=10)
        resp.raise_for_status()
        return resp.json()

    return patiently(call, f"sandbox {path}")


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


# --------------------------------------------------------------------------- the demo
def _fresh_state() -> tuple[str, dict[str, str]]:
    """Every demo starts from the seed: a fresh sandbox, so also a fresh Airflow database and audit store
    (their memory of comments already posted would otherwise silence the new sandbox's records). The
    admin password and the Fernet/JWT keys are kept between demos."""
    from cryptography.fernet import Fernet

    shutil.rmtree(STATE / "audit", ignore_errors=True)
    home = STATE / "airflow"
    for stale in ("airflow.db", "airflow.db-journal", "airflow.db-wal", "airflow.db-shm"):
        (home / stale).unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    password_file = home / "simple_auth_manager_passwords.json.generated"
    if not password_file.exists():
        password_file.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}) + "\n")
    secrets_file = STATE / "secrets.json"
    if not secrets_file.exists():
        secrets_file.write_text(
            json.dumps({"jwt": secrets.token_urlsafe(32), "fernet": Fernet.generate_key().decode()})
        )
    return json.loads(password_file.read_text())["admin"], json.loads(secrets_file.read_text())


def _healthy(airflow_url: str) -> bool:
    health = requests.get(f"{airflow_url}/api/v2/monitor/health", timeout=10).json()
    return all(
        (health.get(c) or {}).get("status") == "healthy"
        for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )


def run_demo(args: argparse.Namespace) -> int:
    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8765"))
    airflow_port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    for port, variable in ((sandbox_port, "SANDBOX_PORT"), (airflow_port, "AIRFLOW_PORT")):
        if port_in_use(port):
            raise DemoError(
                f"port {port} on {LOCAL} is in use: stop what uses it or set {variable}=<free port>"
            )
    sandbox = f"http://{LOCAL}:{sandbox_port}"
    airflow_url = f"http://{LOCAL}:{airflow_port}"
    password, keys = _fresh_state()
    python = sys.executable
    env = demo_env(
        os.environ,
        python=python,
        state=STATE,
        sandbox_url=sandbox,
        airflow_port=airflow_port,
        keys=keys,
        password=password,
        cpus=available_cpus(),
        schedule=args.keep_running,
    )
    with process_tree(env, LOGS) as tree:
        print(f"starting the sandbox on {sandbox} (log: {tree.log_of('sandbox')})")
        tree.start(
            "sandbox",
            [python, "-m", "idc_sandbox", "--host", LOCAL, "--port", str(sandbox_port), "--seed", "demo"],
        )
        wait_until(
            "the sandbox answering",
            90,
            lambda: requests.get(f"{sandbox}/_health", timeout=5).status_code < 500,
            tree,
            hint=str(tree.log_of("sandbox")),
        )
        before = _assignment_keys(sandbox)

        print(f"preparing the Airflow database (log: {tree.log_of('db-migrate')})")
        migrate = tree.start("db-migrate", [python, "-m", "airflow", "db", "migrate"])
        if migrate.wait() != 0:
            raise DemoError(
                f"airflow db migrate failed (exit {migrate.returncode}): see {tree.log_of('db-migrate')}"
            )
        del tree.procs["db-migrate"]

        print(
            f"starting Airflow on {airflow_url}: {', '.join(COMPONENTS)}, "
            f"{env['AIRFLOW__CORE__PARALLELISM']} worker(s) (logs: {LOGS}/)"
        )
        for component in COMPONENTS:
            tree.start(component, component_command(python, component))
        wait_until(
            "Airflow's api-server, scheduler, triggerer and dag-processor becoming healthy",
            300,
            lambda: _healthy(airflow_url),
            tree,
            hint=f"{LOGS}/",
        )
        af = Airflow(airflow_url)
        patiently(lambda: af.login("admin", password), "login")
        wait_until(
            "the DAG idc_sync being parsed",
            240,
            lambda: _dag_parsed(af, "idc_sync"),
            tree,
            hint=str(tree.log_of("dag-processor")),
        )
        print("triggering idc_sync ...")
        run_id = af.trigger("idc_sync", args.conf)
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
        if run["state"] != "success":
            print(
                f"\nthe run failed: task logs in {STATE}/airflow/logs, component logs in {LOGS}/",
                file=sys.stderr,
            )
        if args.keep_running:
            print(f"\nAirflow UI: {airflow_url}  (user admin, password {password})")
            print(f"Sandbox:    {sandbox}  (control API: {sandbox}/_sandbox/...)")
            print("Press Ctrl-C to stop.")
            try:
                while True:
                    tree.check_alive()
                    time.sleep(2)
            except Stopped as stop:
                print(f"\nstopped ({SIGNAL_NAMES.get(stop.signum, str(stop.signum))})")
        return 0 if run["state"] == "success" else 1


def _dag_parsed(af: Airflow, dag_id: str) -> bool:
    try:
        af("GET", f"/dags/{dag_id}")
    except AirflowApiError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow and the sandbox running")
    parser.add_argument("--conf", default="{}", help="JSON trigger params for the demo run")
    args = parser.parse_args(argv)
    try:
        args.conf = json.loads(args.conf)
    except ValueError as exc:
        parser.error(f"--conf is not JSON: {exc}")
    if not isinstance(args.conf, dict):
        parser.error("--conf must be a JSON object, e.g. '{\"dry_run\": true}'")

    return supervised(lambda: run_demo(args), logs=LOGS)


if __name__ == "__main__":
    raise SystemExit(main())
