"""Security pass (issue 14): known secret values go through good and failing runs of the real DAG, then
every place the pipeline writes to is scanned for them.

The secrets: both kintone API tokens, the Graph client secret, the Slack webhook path, the AWS access key
and secret key, and the kintone webhook endpoint's secret. The places: every log record and everything
printed while the runs ran, XComs (the metadata database and the object-storage backend's files), rendered
template fields, DagRun notes, the audit and state stores, Slack messages, and kintone comments.
The failing runs are the ones whose errors are most likely to carry a credential: a kintone token the
service refuses, a Graph secret the token endpoint refuses, Slack answering 500 (its URL holds the secret),
AWS refusing writes, and a kintone outage.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from idc_sandbox.connections import airflow_connection_env
from idc_sandbox.core import FaultRule

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KINTONE_TOKENS = ("KtnSecretTokenAlpha0000000000000000001", "KtnSecretTokenBravo0000000000000000002")
GRAPH_SECRET = "GraphClientSecret~Charlie.000000000003"
SLACK_PATH = "/services/T0SECRET/B0SECRET/SlackHookDelta000000004"
AWS_KEY_ID = "AKIASECRETECHO0000005"
AWS_SECRET = "AwsSecretKeyFoxtrot/000000000000000000006"
WEBHOOK_SECRET = "WebhookSecretGolf0000000000000000000007"
SECRETS = (*KINTONE_TOKENS, GRAPH_SECRET, SLACK_PATH, AWS_KEY_ID, AWS_SECRET, WEBHOOK_SECRET)


def _state(run: Any) -> str:
    return str(run.state).split(".")[-1].lower()


def _use_secrets(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox accepts exactly these credentials; the connections carry them."""
    world = harness.sandbox.world
    for app, token in zip(
        sorted(world.kintone.apps.values(), key=lambda a: a.id), KINTONE_TOKENS, strict=False
    ):
        app.api_tokens = [token]
    client_id = next(iter(world.entra.clients))
    world.entra.clients = {client_id: GRAPH_SECRET}
    world.slack.webhooks = {SLACK_PATH}
    env = airflow_connection_env(harness.url, sandbox=harness.sandbox)
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    aws.update(login=AWS_KEY_ID, password=AWS_SECRET)
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(aws)
    env["AIRFLOW_CONN_IDC_SYNC_WEBHOOK"] = json.dumps({"conn_type": "generic", "password": WEBHOOK_SECRET})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert (
        SLACK_PATH in env["AIRFLOW_CONN_SLACK_IDC_SYNC"]
        and KINTONE_TOKENS[0] in env["AIRFLOW_CONN_KINTONE_DEFAULT"]
    )


def _database_texts(run_ids: list[str]) -> dict[str, str]:
    """What the metadata database holds about these runs: XComs, rendered fields, notes."""
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[str, str] = {}
    with create_session() as session:
        for row in session.query(XComModel).filter(XComModel.run_id.in_(run_ids)):
            out[f"xcom {row.run_id} {row.task_id} {row.key}"] = str(row.value)
        for rtif in session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.run_id.in_(run_ids)
        ):
            out[f"rendered {rtif.run_id} {rtif.task_id}"] = json.dumps(rtif.rendered_fields, default=str)
            out[f"k8s {rtif.run_id} {rtif.task_id}"] = json.dumps(rtif.k8s_pod_yaml, default=str)
        for run in session.query(DagRun).filter(DagRun.run_id.in_(run_ids)):
            out[f"note {run.run_id}"] = str(run.note)
            out[f"conf {run.run_id}"] = json.dumps(run.conf, default=str)
    return out


def _files(folder: Path, label: str) -> dict[str, str]:
    """Every file under ``folder`` (gzip or not) as text."""
    import gzip

    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            out[f"{label} {path.relative_to(folder)}"] = raw.decode("utf-8", "replace")
    return out


def _leaks(places: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, s) for where, text in places.items() for s in SECRETS if s in text]


def test_no_secret_reaches_logs_xcoms_notes_audit_state_slack_or_comments(
    harness: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any, capfd: Any
) -> None:
    _use_secrets(harness, monkeypatch)
    sb = harness.sandbox
    runs: list[Any] = []
    with caplog.at_level(logging.DEBUG):
        runs.append(harness.run(allow_mass_delete=True))  # a good run that writes, comments and posts
        assert _state(runs[-1]) == "success"
        runs.append(harness.run(dry_run=True))

        sb.faults.add(FaultRule(service="slack", kind="error5xx", count=1000))  # the URL is the secret
        sb.faults.add(
            FaultRule(service="sso-admin", kind="access_denied", operation="CreateAccountAssignment")
        )
        sb.faults.add(
            FaultRule(service="sso-admin", kind="access_denied", operation="DeleteAccountAssignment")
        )
        from idc_sandbox import kintone as kintone_sandbox

        kintone_sandbox.add_record(
            sb,
            harness.app_id("assignments"),
            {
                "principal_type": "USER",
                "users": ["carol@example.com"],
                "targets": "101010101010",
                "permission_set": "ReadOnly",
            },
            user_code="alice@example.com",
        )
        runs.append(harness.run())
        sb.faults.clear()

        sb.world.entra.clients = {k: "a-rotated-secret" for k in sb.world.entra.clients}  # ours is refused
        runs.append(harness.run())
        sb.world.entra.clients = {k: GRAPH_SECRET for k in sb.world.entra.clients}

        for app in sb.world.kintone.apps.values():  # our kintone tokens are refused
            app.api_tokens = ["a-rotated-token"]
        runs.append(harness.run())
        assert _state(runs[-1]) == "failed"
        for app, token in zip(
            sorted(sb.world.kintone.apps.values(), key=lambda a: a.id), KINTONE_TOKENS, strict=False
        ):
            app.api_tokens = [token]

        sb.faults.add(FaultRule(service="kintone", kind="outage", count=1000))
        runs.append(harness.run())
        assert _state(runs[-1]) == "failed"
        sb.faults.clear()
        runs.append(harness.run())  # delivers what Slack refused earlier
    assert len(harness.slack()) > 0 and len(harness.comments()) > 0

    places: dict[str, str] = {}
    for i, record in enumerate(caplog.records):
        places[f"log {record.name} #{i}"] = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
    captured = capfd.readouterr()
    places["stdout"], places["stderr"] = captured.out, captured.err
    places.update(_database_texts([r.run_id for r in runs]))
    places.update(_files(harness.audit, "audit"))
    places.update(_files(Path(os.environ["AIRFLOW_HOME"]) / "xcom", "xcom-store"))
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if logs.exists():
        places.update(_files(logs, "task-log"))
    places["slack"] = json.dumps(harness.slack(), ensure_ascii=False)
    places["comments"] = json.dumps(harness.comments(), ensure_ascii=False)
    # the scan reads what it claims to: audits, notes, XComs, Slack messages and comments are there
    kinds = {where.split()[0] for where, text in places.items() if text}
    assert {"log", "xcom", "note", "audit", "slack", "comments"} <= kinds, kinds
    leaks = _leaks(places)
    # The one exception, at DEBUG level only: botocore's request dump shows the SigV4 Authorization header,
    # which names the access key id (never the secret key). Airflow logs tasks at INFO by default, and a
    # deployment uses a role (web identity), not static keys; the README says so.
    debug_only = {f"log {r.name} #{i}" for i, r in enumerate(caplog.records) if r.levelno < logging.INFO}
    assert {s for w, s in leaks if w in debug_only} <= {AWS_KEY_ID}
    assert [(w, s) for w, s in leaks if w not in debug_only] == []
