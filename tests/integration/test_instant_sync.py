"""Instant sync from kintone, end to end on the real stack: the sandbox's kintone sends its webhooks to the
endpoint the plugin serves on the real api-server.

Story: a requester comments ``/sync`` on their record -> kintone's webhook reaches
``/idc-sync/webhooks/kintone?token=...`` -> an idc_sync run is queued within seconds and the record says
"sync started" -> the run finishes and the record gets its answer; the pipeline's own comments (they come
back as webhooks) start nothing; a burst of 50 webhooks queues at most one run; a replayed body, a wrong or
missing token, an oversized or malformed body are refused.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow_stack import airflow_stack, finished_run, parsed_and_unpaused, wait_until

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox import kintone_webhooks
from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

DAG_ID = "idc_sync"
ASSIGNMENTS_APP, RECORD, REQUESTER = 2, 5, "erin@example.com"  # BillingViewer for dave and erin


def _runs(api: Any) -> list[dict[str, Any]]:
    return api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]


def _texts(sandbox: Sandbox) -> list[str]:
    return [c["text"] for c in kintone_sandbox.comments_of(sandbox, ASSIGNMENTS_APP, RECORD)]


def _record_webhook(n: int) -> dict[str, Any]:
    return {
        "id": f"burst-{n}",
        "type": "UPDATE_RECORD",
        "app": {"id": str(ASSIGNMENTS_APP), "name": "assignments"},
        "record": {"$id": {"type": "__ID__", "value": str(RECORD)}},
        "recordTitle": "",
        "url": "https://example.cybozu.com/k/2/show#record=5",
    }


def test_a_sync_comment_starts_a_run_within_seconds_and_is_answered_on_the_record(tmp_path: Path) -> None:
    started = time.monotonic()
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    secret = secrets.token_urlsafe(24)
    webhook_conn = json.dumps({"conn_type": "http", "password": secret})
    with airflow_stack(
        tmp_path, sandbox, {"max_deletions": 0}, AIRFLOW_CONN_IDC_SYNC_WEBHOOK=webhook_conn
    ) as (procs, api, audit):
        parsed_and_unpaused(api, procs, DAG_ID)
        endpoint = f"{api.url}/idc-sync/webhooks/kintone"

        # refused: no token, a wrong token, an oversized body, a body that is not JSON
        body = json.dumps(_record_webhook(0))
        assert requests.post(endpoint, data=body, timeout=10).status_code == 401
        assert requests.post(f"{endpoint}?token=wrong", data=body, timeout=10).status_code == 401
        big = requests.post(f"{endpoint}?token={secret}", data=b"x" * 1_100_000, timeout=30)
        assert big.status_code == 413
        assert requests.post(f"{endpoint}?token={secret}", data=b"{not json", timeout=10).status_code == 400
        assert requests.get(f"{endpoint}?token={secret}", timeout=10).status_code == 405
        assert _runs(api) == []

        # the requester's /sync, sent by kintone's webhook
        kintone_webhooks.register(sandbox, f"{endpoint}?token={secret}")
        asked = time.monotonic()
        kintone_sandbox.add_comment(sandbox, ASSIGNMENTS_APP, RECORD, "/sync", user_code=REQUESTER)
        [run] = wait_until("the webhook's run", 60, lambda: _runs(api), procs, every=0.5)
        print(f"run {run['dag_run_id']} created {time.monotonic() - asked:.1f} s after the /sync comment")
        assert run["dag_run_id"].startswith("webhook__")
        wait_until(
            "the 'sync started' answer",
            60,
            lambda: any("👀 同期を開始しました" in t for t in _texts(sandbox)),
            procs,
            every=0.5,
        )
        done = finished_run(api, procs, DAG_ID, run["dag_run_id"], 600)
        assert done["state"] == "success", api.task_states(DAG_ID, run["dag_run_id"])
        answers = [t for t in _texts(sandbox) if "同期が終わりました" in t]
        assert len(answers) == 1 and "このレコードのアクセス権を反映しました" in answers[0], _texts(sandbox)
        assert not list((audit / "state" / "sync_requests").glob("*.json"))  # answered, forgotten

        # the pipeline's own comments came back as webhooks and started nothing
        kintone_webhooks.wait_delivered(sandbox, 60)
        own = [d for d in kintone_webhooks.deliveries(sandbox) if d["type"] == "ADD_RECORD_COMMENT"]
        assert len(own) >= 3, own  # /sync, "sync started", the answer (and the run's other comments)
        assert len(_runs(api)) == 1

        # a replayed body is received once
        replay = json.dumps(_record_webhook(999))
        first = requests.post(f"{endpoint}?token={secret}", data=replay, timeout=10).json()
        again = requests.post(f"{endpoint}?token={secret}", data=replay, timeout=10).json()
        assert first["triggered"] is True and again == {"triggered": False, "reason": "already received"}

        # a burst of 50 record changes: at most one queued run (one may be running already)
        before = {r["dag_run_id"] for r in _runs(api)}
        for n in range(50):
            answer = requests.post(
                f"{endpoint}?token={secret}", data=json.dumps(_record_webhook(n)), timeout=10
            )
            assert answer.status_code == 200, answer.text
        runs = _runs(api)
        new = [r for r in runs if r["dag_run_id"] not in before]
        queued = [r for r in runs if r["state"] == "queued"]
        print(f"burst: {len(new)} new run(s), {len(queued)} queued")
        assert len(queued) <= 1 and len(new) <= 1, runs
        # the token never reached a log
        logs = "\n".join(p.read_text(errors="replace") for p in procs.logs.glob("*.log"))
        assert secret not in logs
        assert (
            "path=/idc-sync/webhooks/kintone" in logs
            and "kintone webhook refused: missing or wrong token" in logs
        )
    print(f"instant-sync test took {time.monotonic() - started:.0f} s")
