"""Run the real `idc_sync` DAG (``dag.test()``) against the sandbox through real HTTP.

The Airflow metadata database is a SQLite file in the session's throw-away AIRFLOW_HOME (set in
tests/conftest.py), migrated once. Connections are ``AIRFLOW_CONN_*`` variables pointing at the sandbox,
exactly as the demo and a real deployment define them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_grants import Grant, granted

from idc_sandbox.connections import airflow_connection_env
from idc_sandbox.core import Sandbox, SandboxConfig, SystemClock
from idc_sandbox.seed import load_named_seed, load_seed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="session")
def idc_dag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("idc_sync")


class SyncHarness:
    """A seeded sandbox + connections + a way to run the DAG and read what happened."""

    def __init__(self, sandbox: Sandbox, url: str, dag: Any, audit: Path) -> None:
        self.sandbox = sandbox
        self.url = url
        self.dag = dag
        self.audit = audit

    def run(self, **conf: Any) -> Any:
        """One DAG run with these trigger params (others at their defaults); returns the DagRun.

        Every param is passed explicitly: ``dag.test(run_conf=...)`` leaves the conf on the shared DAG
        object, so a param omitted here would silently keep the previous test's value.
        """
        defaults = {name: param.value for name, param in self.dag.params.items()}
        defaults.update(DEFAULT_PARAMS)
        return self.dag.test(run_conf={**defaults, **conf})

    # ------------------------------------------------------------------ observations
    def assignments(self) -> set[Grant]:
        """(account, permission set name, principal type, principal name) in the sandbox's IdC."""
        return granted(self.sandbox)

    def permission_set(self, name: str) -> Any:
        for ps in self.sandbox.world.identity_center.permission_sets.values():
            if ps.name == name:
                return ps
        return None

    def comments(self) -> list[tuple[int, int, str, list[str]]]:
        """(app id, record id, text, mentioned codes) of every kintone comment, oldest first; the text as
        posted (kintone stores the mentioned names in front of it: ``"Name1 Name2 \n"``, left out here)."""
        out = []
        for app in self.sandbox.world.kintone.apps.values():
            for record_id, items in app.comments.items():
                for c in items:
                    text = c.text.split(" \n", 1)[1] if c.mentions else c.text
                    out.append((app.id, record_id, text, [m["code"] for m in c.mentions], c.id))
        return [(a, r, t, m) for a, r, t, m, _ in sorted(out, key=lambda x: (x[4], x[0]))]

    def slack(self) -> list[dict[str, Any]]:
        return [m.payload for m in self.sandbox.world.slack.messages]

    def writes(self) -> list[Any]:
        """sso-admin calls that change something (the call log), to assert no-change runs."""
        read = ("List", "Describe", "Get")
        return [c for c in self.sandbox.calls.calls("sso-admin") if not c.operation.startswith(read)]

    def audit_files(self) -> list[Path]:
        return sorted(self.audit.glob("runs/*/*.json"))

    def last_audit(self) -> dict[str, Any]:
        return json.loads(self.audit_files()[-1].read_text())

    def app_id(self, key: str) -> int:
        return next(
            a.id
            for a in self.sandbox.world.kintone.apps.values()
            if a.name.lower().endswith(key.replace("_", " "))
        )


@pytest.fixture
def harness(
    sandbox_server: Any, idc_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SyncHarness]:
    sandbox: Sandbox = sandbox_server.sandbox
    sandbox.reset()
    sandbox.config = SandboxConfig(async_latency_seconds=0.05)
    sandbox.clock = SystemClock()
    load_seed(sandbox, load_named_seed("demo"))
    for key, value in airflow_connection_env(sandbox_server.url, sandbox=sandbox).items():
        monkeypatch.setenv(key, value)
    audit = tmp_path / "audit"
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"audit_path": str(audit)}))
    yield SyncHarness(sandbox, sandbox_server.url, idc_dag, audit)


RunDag = Callable[..., Any]
DEFAULT_PARAMS: dict[str, Any] = {
    "dry_run": False,
    "scope_accounts": [],
    "scope_permission_sets": [],
    "allow_mass_delete": False,
    "drift_mode": "enforce",
    "full_resync": False,
    "skip_scim_check": False,
}
