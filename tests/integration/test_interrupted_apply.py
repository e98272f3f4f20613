"""A run whose process is killed mid-apply (SIGKILL: no callback, no notify, no cache update) is continued
by the next run with nothing sent twice: the apply journal names the pairs the killed run may have changed,
the next run re-reads exactly those before planning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from idc_sandbox import kintone as kintone_sandbox
from tests.integration.conftest import DEFAULT_PARAMS, REPO

pytestmark = pytest.mark.integration

READONLY_ACCOUNTS = ("101010101010", "444444444444", "555555555555", "666666666666", "888888888888")
_CHILD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag("idc_sync")
dag.test(run_conf=json.loads(sys.argv[2]))
"""


def _creates(harness: Any) -> Counter[tuple[str, str, str]]:
    return Counter(
        (c.params.get("TargetId"), c.params.get("PermissionSetArn"), c.params.get("PrincipalId"))
        for c in harness.sandbox.calls.calls("sso-admin", "CreateAccountAssignment")
        if c.status == 200
    )


def _told_pairs(text: str) -> set[tuple[str, str]]:
    """(principal name, account) pairs an "access is live" comment lists: a "- ..." line naming the
    principal, then "  - <account>" lines."""
    pairs, who = set(), ""
    for line in text.splitlines():
        if line.startswith("- "):
            who = next((w for w in line.split() if "@" in w), "")
        elif line.startswith("  - ") and who:
            pairs.add((who, line[4:].split(":")[0].strip()))
    return pairs


def _wait_for(predicate: Any, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Polls ``predicate`` (the sandbox is in this process; the run is in the child)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before it was killed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def test_a_run_killed_mid_apply_is_continued_by_the_next_run_with_nothing_sent_twice(
    harness: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert harness.run(allow_mass_delete=True).state == "success"  # converged: the cache knows every pair
    # A requester adds five users to ReadOnly on five accounts where ReadOnly is already assigned: every
    # create lands on a pair the cache holds (no permission set changes, nothing else re-read).
    record_id = kintone_sandbox.add_record(
        harness.sandbox,
        harness.app_id("assignments"),
        {
            "principal_type": "USER",
            "users": [f"{u}@example.com" for u in ("alice", "bob", "carol", "dave", "erin")],
            "targets": "\n".join(READONLY_ACCOUNTS),
            "permission_set": "ReadOnly",
        },
        user_code="alice@example.com",
    )
    harness.sandbox.calls.clear()
    audits = len(harness.audit_files())
    # Slow enough that the kill lands while assignments are being created; no checkpoint before the kill,
    # so everything the next run knows about the killed run's work comes from the journal.
    harness.sandbox.config.async_latency_seconds = 1.0
    config = {"audit_path": str(harness.audit), "assignment_concurrency": 2, "apply_checkpoint_seconds": 3600}
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps(config))
    conf = {name: param.value for name, param in harness.dag.params.items()} | DEFAULT_PARAMS
    conf["allow_mass_delete"] = True
    log = tmp_path / "killed_run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(REPO / "dags"), json.dumps(conf)],
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for(lambda: sum(_creates(harness).values()) >= 4, 300, proc, log)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    before = _creates(harness)
    journal = json.loads((harness.audit / "state/apply_journal.json").read_text())
    assert journal["started"], journal  # the killed run left the pairs it was changing
    assert (
        len(harness.audit_files()) == audits
    )  # notify never ran: nothing but the journal says what happened

    # No sweep in the next run (at the demo's size it would re-read everything and hide the point): only
    # the journal can tell it what the killed run did.
    no_sweep = {"audit_path": str(harness.audit), "sweep_min_calls_per_run": 0, "sweep_period_minutes": 10**6}
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps(no_sweep))
    run = harness.run(allow_mass_delete=True)
    assert run.state == "success"
    after = _creates(harness)
    assert max(after.values()) == 1, [k for k, n in after.items() if n > 1]  # nothing sent twice
    assert set(before) < set(after)  # the next run did the rest
    # the requester hears once that all of it is live, what the killed run made included (its journal
    # names it; the next run found it in place and planned nothing for it)
    [told] = [text for _app, rid, text, _m in harness.comments() if str(rid) == str(record_id)]
    names = {u.user_id: u.user_name for u in harness.sandbox.world.identity_store.users.values()}
    killed_made = {(names[pid], account) for account, _arn, pid in before}
    assert killed_made <= _told_pairs(told), (sorted(killed_made - _told_pairs(told)), told)
    audit = harness.last_audit()
    done = [r for r in audit["results"] if r["kind"] == "create_assignment"]
    assert {r["status"] for r in done} == {"succeeded"}  # nothing of the killed run's work planned again
    assert len(done) == len(after) - len(before)

    harness.sandbox.calls.clear()
    assert harness.run().state == "success"
    assert harness.writes() == []  # converged: IdC is what kintone asks for
