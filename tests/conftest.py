"""Shared fixtures: one sandbox server per test session, reset before each test that uses it.

The tests come in four kinds, one folder each:

- ``unit``: idc_sync and the Airflow glue on hand-built inputs and fakes; no sandbox server.
- ``sandbox``: the emulator itself (include/idc_sandbox): does it answer like kintone, AWS, Entra and Slack?
  Through unmodified clients (boto3, raw HTTP) and against moto; no idc_sync code under test.
- ``component``: idc_sync code (clients, observe, snapshot, apply, adopt, incremental reads) against the
  sandbox over real HTTP.
- ``integration``: the real DAG (``dag.test()``, or the real scheduler) against the sandbox.

Airflow reads its configuration when first imported, so its environment (a throw-away AIRFLOW_HOME with
a SQLite database, this repo's dags/ and plugins/) is set here, before any test module imports it, and
removed when the session ends.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="idc-sync-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# Retried tasks wait 1 s instead of 20 s (the DAG reads this when parsed): retries are tested, not waited.
os.environ.setdefault("IDC_SYNC_RETRY_DELAY_SECONDS", "1")

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.config import Config  # noqa: E402

from idc_sandbox.connections import object_storage_xcom_env  # noqa: E402
from idc_sandbox.core import Sandbox, SandboxConfig, SystemClock  # noqa: E402

# Large XComs (the observed state) go to object storage by reference, as in production (README); the
# threshold is low so the demo organization's states take that path too.
os.environ.update(object_storage_xcom_env(f"{_AIRFLOW_HOME}/xcom", threshold_bytes=2048))
from idc_sandbox.server import SandboxServer  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(Sandbox(SandboxConfig())) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Sandbox:
    """The running sandbox, emptied, with default config (real rate limits, 0.5 s async latency) and the
    real clock (a test that needs time to pass sets ``sandbox.clock = ManualClock()`` and advances it)."""
    sb = sandbox_server.sandbox
    sb.reset()
    sb.config = SandboxConfig()
    sb.clock = SystemClock()
    return sb


@pytest.fixture
def sandbox_url(sandbox_server: SandboxServer, sandbox: Sandbox) -> str:
    return sandbox_server.url


@pytest.fixture
def aws_client(sandbox_url: str) -> Callable[..., Any]:
    """``aws_client("sso-admin")``: an unmodified boto3 client pointed at the sandbox.

    ``max_attempts`` is botocore's *retry* count in the ``retries`` dict (0 = the first error is seen as
    it is; botocore's ``total_max_attempts`` would count the first try too).
    """

    def make(service: str, *, max_attempts: int = 0, **kwargs: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=sandbox_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "max_attempts": max_attempts}),
            **kwargs,
        )

    return make
