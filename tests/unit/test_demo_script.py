"""scripts/demo.py without starting Airflow: what it binds, how many workers, patience with a slow
api-server, one-line failures, and Ctrl-C / SIGTERM ending every process it started."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
import yaml

from scripts import demo

REPO = Path(__file__).resolve().parents[2]
KEYS = {"fernet": "f" * 43 + "=", "jwt": "j" * 32}


def build_env(cpus: int = 2, base: dict[str, str] | None = None, *, schedule: bool = False) -> dict[str, str]:
    return demo.demo_env(
        base or {"PATH": "/usr/bin"},
        python="/venv/bin/python",
        state=Path("/tmp/demo-state"),
        sandbox_url="http://127.0.0.1:8765",
        airflow_port=8080,
        keys=KEYS,
        password="pw",
        cpus=cpus,
        schedule=schedule,
    )


def test_demo_up_keeps_the_schedule_so_next_run_is_a_real_tick() -> None:
    assert build_env()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"  # make demo: its own run only
    assert build_env(schedule=True)["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"  # make demo-up


# --------------------------------------------------------------------------- what the demo binds and runs
def test_every_address_the_demo_configures_is_loopback() -> None:
    env = build_env()
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    hosts = {
        key: urlsplit(value).hostname
        for key, value in env.items()
        if key.startswith("AIRFLOW__") and value.startswith("http")
    }
    # connections carry URLs inside JSON
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            conn = json.loads(value)
            for field in ("host", "password"):
                if str(conn.get(field)).startswith("http"):
                    hosts[f"{key}.{field}"] = urlsplit(conn[field]).hostname
            for field, extra in (conn.get("extra") or {}).items():
                if isinstance(extra, str) and "://" in extra:
                    hosts[f"{key}.extra.{field}"] = urlsplit(extra).hostname
    assert set(hosts) >= {
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW_CONN_AIRFLOW_API.host",
        "AIRFLOW_CONN_KINTONE_DEFAULT.host",
        "AIRFLOW_CONN_SLACK_IDC_SYNC.password",
        "AIRFLOW_CONN_AWS_DEFAULT.extra.endpoint_url",
        "AIRFLOW_CONN_GRAPH_DEFAULT.extra.graph_base_url",
    }
    assert set(hosts.values()) == {"127.0.0.1"}, hosts
    assert not [value for value in env.values() if "0.0.0.0" in value]


@pytest.mark.parametrize(("cpus", "workers"), [(0, "1"), (1, "1"), (2, "2"), (4, "4"), (32, "4")])
def test_local_executor_runs_one_worker_per_core_at_most_four(cpus: int, workers: str) -> None:
    assert build_env(cpus=cpus)["AIRFLOW__CORE__PARALLELISM"] == workers


def test_a_shells_own_airflow_settings_do_not_leak_into_the_demo() -> None:
    env = build_env(
        base={
            "PATH": "/usr/bin",
            "HOME": "/home/me",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod-db/airflow",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW_HOME": "/home/me/airflow",
        }
    )
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW_HOME"] == "/tmp/demo-state/airflow"
    assert env["HOME"] == "/home/me"
    assert env["PATH"] == "/venv/bin:/usr/bin"


def _airflow_config() -> dict[str, Any]:
    spec = importlib.util.find_spec("airflow")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "config_templates" / "config.yml"
    return dict(yaml.safe_load(path.read_text()))


def test_every_airflow_setting_the_demo_sets_exists_and_no_log_server_host_does() -> None:
    config = _airflow_config()
    settings = [key for key in build_env() if key.startswith("AIRFLOW__")]
    unknown = []
    for key in settings:
        section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
        if section == "common_io":  # a provider's section (the object-storage XCom backend)
            continue
        if option not in (config.get(section) or {}).get("options", {}):
            unknown.append(key)
    assert unknown == []
    # Why the demo does not start the log servers: Airflow 3.3 binds them on every interface and has no
    # setting for their host. If this fails, Airflow grew one: bind them on 127.0.0.1 and start them again.
    logging_options = set(config["logging"]["options"])
    assert {"worker_log_server_port", "trigger_log_server_port"} <= logging_options
    assert not [o for o in logging_options if "log_server" in o and "host" in o]


def test_scheduler_and_triggerer_start_without_their_log_servers(tmp_path: Path) -> None:
    commands = {c: demo.component_command("python", c) for c in demo.COMPONENTS}
    assert commands == {
        "api-server": ["python", "-m", "airflow", "api-server"],
        "dag-processor": ["python", "-m", "airflow", "dag-processor"],
        "scheduler": ["python", "-m", "airflow", "scheduler", "--skip-serve-logs"],
        "triggerer": ["python", "-m", "airflow", "triggerer", "--skip-serve-logs"],
    }
    # the flag is real in the installed Airflow
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    for component in ("scheduler", "triggerer"):
        out = subprocess.run(
            [sys.executable, "-m", "airflow", component, "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "--skip-serve-logs" in out.stdout


def test_a_port_in_use_is_seen_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert demo.port_in_use(port)
    assert not demo.port_in_use(port)


# --------------------------------------------------------------------------- patience with a slow api-server
def _response(status: int, body: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.url = "http://127.0.0.1:8080/api/v2"
    return resp


class FakeSession:
    """``requests.Session.request`` answering from a script: each item an exception to raise or a
    response to return (or a callable of the path for routing)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str]] = []
        self.headers: dict[str, str] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.requests.append((method, url))
        item = self.script.pop(0)
        if callable(item):
            item = item(url)
        if isinstance(item, BaseException):
            raise item
        return item


def fake_airflow(script: list[Any]) -> tuple[demo.Airflow, FakeSession, list[float], list[str]]:
    sleeps: list[float] = []
    said: list[str] = []
    api = demo.Airflow("http://127.0.0.1:8080", sleep=sleeps.append, say=said.append)
    session = FakeSession(script)
    api.session = session  # type: ignore[assignment]
    return api, session, sleeps, said


def test_a_slow_status_poll_is_tried_again_not_fatal() -> None:
    api, session, sleeps, said = fake_airflow(
        [
            requests.ReadTimeout("Read timed out. (read timeout=30)"),
            requests.ConnectionError("Connection refused"),
            _response(503, {"detail": "busy"}),
            _response(200, {"state": "running"}),
        ]
    )
    assert api("GET", "/dags/idc_sync/dagRuns/r1") == {"state": "running"}
    assert len(session.requests) == 4
    assert sleeps == [2, 4, 8]
    assert said == [
        "  (GET /dags/idc_sync/dagRuns/r1: ReadTimeout, trying again)",
        "  (GET /dags/idc_sync/dagRuns/r1: ConnectionError, trying again)",
        "  (GET /dags/idc_sync/dagRuns/r1: AirflowApiError, trying again)",
    ]


def test_a_poll_that_never_answers_gives_up_after_the_attempts() -> None:
    api, session, sleeps, _ = fake_airflow([requests.ReadTimeout("slow")] * (demo.POLL_ATTEMPTS + 1))
    with pytest.raises(requests.ReadTimeout):
        api("GET", "/dags/idc_sync")
    assert len(session.requests) == demo.POLL_ATTEMPTS
    assert len(sleeps) == demo.POLL_ATTEMPTS - 1


def test_an_answer_is_not_retried() -> None:
    api, session, sleeps, _ = fake_airflow([_response(404, {"detail": "no such DAG"})])
    with pytest.raises(demo.AirflowApiError, match="HTTP 404"):
        api("GET", "/dags/idc_sync")
    assert (len(session.requests), sleeps) == (1, [])


def test_a_trigger_is_never_sent_twice() -> None:
    api, session, sleeps, _ = fake_airflow([requests.ReadTimeout("slow"), _response(200, {})])
    with pytest.raises(requests.ReadTimeout):
        api.trigger("idc_sync", {})
    assert session.requests == [("POST", "http://127.0.0.1:8080/api/v2/dags/idc_sync/dagRuns")]
    assert sleeps == []


def test_waiting_for_a_run_rides_out_a_slow_answer() -> None:
    def task_states(state: str) -> requests.Response:
        return _response(200, {"task_instances": [{"task_id": "notify", "state": state}]})

    api, _, sleeps, said = fake_airflow(
        [
            _response(200, {"state": "running", "dag_run_id": "r1"}),
            task_states("running"),
            requests.ReadTimeout("slow"),
            _response(200, {"state": "success", "dag_run_id": "r1"}),
            task_states("success"),
        ]
    )
    run = api.wait_for_run("idc_sync", "r1", timeout=600)
    assert run == {"state": "success", "dag_run_id": "r1"}
    assert sleeps == [3, 2]  # one poll interval, one back-off
    assert said == [
        "  notify=running",
        "  (GET /dags/idc_sync/dagRuns/r1: ReadTimeout, trying again)",
        "  notify=success",
    ]


# --------------------------------------------------------------------------- failures in one line
def _fail_with(exc: BaseException) -> Callable[[], int]:
    def body() -> int:
        raise exc

    return body


def test_an_unexpected_error_is_one_line_naming_the_logs_and_the_traceback_file(tmp_path: Path) -> None:
    err = io.StringIO()
    code = demo.friendly(
        _fail_with(
            requests.ReadTimeout(
                "HTTPConnectionPool(host='127.0.0.1', port=8080):\nRead timed out. (read timeout=30)"
            )
        ),
        logs=tmp_path,
        err=err,
    )
    assert code == 1
    assert err.getvalue() == (
        "demo failed: ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=8080): Read timed out. "
        f"(read timeout=30) (traceback: {tmp_path}/demo-error.log; logs: {tmp_path}/)\n"
    )
    assert (tmp_path / "demo-error.log").read_text().startswith("Traceback (most recent call last):")


def test_a_known_failure_is_its_own_line(tmp_path: Path) -> None:
    err = io.StringIO()
    code = demo.friendly(
        _fail_with(demo.DemoError("scheduler exited with code 1: see x.log")), logs=tmp_path, err=err
    )
    assert (code, err.getvalue()) == (1, "demo failed: scheduler exited with code 1: see x.log\n")
    assert not (tmp_path / "demo-error.log").exists()


# --------------------------------------------------------------------------- Ctrl-C and SIGTERM
def test_sigterm_inside_the_demo_unwinds_it_and_the_handlers_are_restored_after() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(demo.Stopped) as stopped, demo.stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes of the main thread
            time.sleep(0.01)
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


# A child that starts two grandchildren: one in its process group that ignores SIGTERM, one that left the
# group (its own session), then writes the three pids and waits.
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    a = subprocess.Popen([sys.executable, "-c", stubborn])
    b = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    time.sleep(0.5)  # let the stubborn one install its handler before the pids are published
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {a.pid} {b.pid}")
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
    """
)


def _wait_for_pids(path: Path, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"the child never wrote {path}"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_stop_ends_the_group_a_stubborn_member_and_a_descendant_that_left_it(tmp_path: Path) -> None:
    tree = demo.ProcessTree(os.environ, tmp_path)
    pids_file = tmp_path / "pids"
    tree.start("child", [sys.executable, "-c", CHILD, str(pids_file)])
    pids = _wait_for_pids(pids_file)
    try:
        assert [p for p in pids if _alive(p)] == pids
        tree.stop(grace=2)
        assert _wait_gone(pids) == []
        assert tree.procs["child"].returncode is not None
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from scripts import demo

    logs, pids_file, child = Path(sys.argv[2]), sys.argv[3], sys.argv[4]

    def body():
        with demo.process_tree({}, logs, grace=2) as tree:
            tree.start("child", [sys.executable, "-c", child, pids_file])
            while True:
                time.sleep(0.05)

    sys.exit(demo.supervised(body, logs=logs))
    """
)


@pytest.mark.parametrize(("sig", "said"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_to_the_demo_ends_its_whole_process_tree(
    tmp_path: Path, sig: signal.Signals, said: str
) -> None:
    pids_file = tmp_path / "pids"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(REPO), str(tmp_path), str(pids_file), CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        pids = _wait_for_pids(pids_file)
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 128 + sig
        assert err == f"stopping child ...\nstopped ({said}); everything the demo started is ended\n"
        assert _wait_gone(pids) == []
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
