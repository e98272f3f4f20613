"""Where the DAG's settings come from: connection ids and the ``idc_sync_config`` Variable."""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, cast

from airflow.sdk import Variable

from idc_sync.audit import AuditStore
from idc_sync.config import SyncConfig

if TYPE_CHECKING:
    from upath import UPath

AWS_CONN_ID = os.environ.get("IDC_SYNC_AWS_CONN_ID", "aws_default")
KINTONE_CONN_ID = os.environ.get("IDC_SYNC_KINTONE_CONN_ID", "kintone_default")
SLACK_CONN_ID = os.environ.get("IDC_SYNC_SLACK_CONN_ID", "slack_idc_sync")
GRAPH_CONN_ID = os.environ.get("IDC_SYNC_GRAPH_CONN_ID", "graph_default")
AIRFLOW_API_CONN_ID = os.environ.get("IDC_SYNC_AIRFLOW_API_CONN_ID", "airflow_api")
CONFIG_VARIABLE = "idc_sync_config"


def retry_delay() -> dt.timedelta:
    """First retry delay of idc_sync's tasks (exponential backoff after it): 20 s, or
    ``$IDC_SYNC_RETRY_DELAY_SECONDS`` (read at parse time; the test suite sets 1 s so retried tasks do not
    make it wait)."""
    raw = os.environ.get("IDC_SYNC_RETRY_DELAY_SECONDS")
    try:
        return dt.timedelta(seconds=float(raw)) if raw else dt.timedelta(seconds=20)
    except ValueError:
        return dt.timedelta(seconds=20)


def approval_timeout() -> dt.timedelta:
    """How long ``idc_sync_approval.approve_deletions`` waits before its default (Reject) applies.

    Read when the DAG files are parsed, so only from the environment (cheap, no metadata-DB access):
    ``$IDC_SYNC_APPROVAL_TIMEOUT_SECONDS`` (for tests), ``$IDC_SYNC_APPROVAL_TIMEOUT_MINUTES``, else
    ``approval_timeout_minutes`` in ``$IDC_SYNC_CONFIG``, else 4 hours. (The ``idc_sync_config``
    Variable is read by tasks only.)
    """
    default = SyncConfig().approval_timeout_minutes * 60
    seconds = os.environ.get("IDC_SYNC_APPROVAL_TIMEOUT_SECONDS")
    minutes = os.environ.get("IDC_SYNC_APPROVAL_TIMEOUT_MINUTES")
    try:
        if seconds:
            value = float(seconds)
        elif minutes:
            value = float(minutes) * 60
        else:
            value = _env_config().approval_timeout_minutes * 60
    except ValueError:
        value = default
    return dt.timedelta(seconds=max(value, 1.0))


def approvers() -> list[dict[str, str]] | None:
    """Who may answer ``approve_deletions`` (HITL ``assigned_users``): ``approvers`` in ``$IDC_SYNC_CONFIG``
    as Airflow user ids; None (anyone with access to the DAG) when empty. Parse-time setting."""
    users = [u.strip() for u in _env_config().approvers if u.strip()]
    return [{"id": u, "name": u} for u in users] or None


def approval_grant_ttl() -> dt.timedelta:
    """How long an Approve lets ``idc_sync`` runs delete that set (``approval_grant_hours`` in
    ``$IDC_SYNC_CONFIG``, default 24 h). Parse-time setting: it is checked against the DAG timings."""
    return dt.timedelta(hours=_env_config().approval_grant_hours)


# Time a task may wait for the scheduler/executor between its upstream finishing and it starting (and the
# HITL timeout sweep's latency): part of every worst-case run computed by the timing checks.
SCHEDULING_SLACK = dt.timedelta(minutes=2)
# Bound of each ordinary task of the approval DAG (record the decision, trigger the sync).
APPROVAL_STEP_TIMEOUT = dt.timedelta(minutes=5)
APPROVAL_STEP_RETRIES = 2
APPROVAL_STEP_RETRY_DELAY = dt.timedelta(seconds=30)


def approval_run_bound() -> dt.timedelta:
    """The approval DAG's dagrun_timeout, by construction: the response timeout plus the worst case of
    its other steps (approve_deletions' own start, deletions_approved, record_decision, run_sync) and the
    scheduling slack of each. Also how long a request counts as pending in ``idc_sync``."""
    step = (
        APPROVAL_STEP_TIMEOUT * (APPROVAL_STEP_RETRIES + 1)
        + APPROVAL_STEP_RETRY_DELAY * APPROVAL_STEP_RETRIES
    )
    return approval_timeout() + 4 * (step + SCHEDULING_SLACK)


def _env_config() -> SyncConfig:
    try:
        return SyncConfig.from_env()
    except ValueError:  # a broken $IDC_SYNC_CONFIG must not break parsing: tasks report it
        return SyncConfig()


def load_config() -> SyncConfig:
    """The Variable ``idc_sync_config`` (JSON) if set, else ``$IDC_SYNC_CONFIG``, else the defaults."""
    raw = Variable.get(CONFIG_VARIABLE, default=None)
    if raw is None:
        return SyncConfig.from_env()
    return SyncConfig.from_json(raw)


def state_store(config: SyncConfig) -> AuditStore:
    """The shared state store of this deployment (audit artifacts, run memory, references to large task
    outputs): ``audit_path`` of the configuration. Refuses a local folder under an executor that runs tasks
    on several machines unless it is declared shared (``idc_sync.shared_state``); an object-storage URL goes
    through Airflow's ObjectStoragePath, so ``s3://<conn_id>@bucket/prefix`` uses that connection."""
    from airflow.sdk.configuration import conf

    from idc_sync.shared_state import is_local, state_store_problem

    problem = state_store_problem(
        conf.get("core", "executor", fallback=""), config.audit_path, shared=config.state_store_shared
    )
    if problem:
        raise RuntimeError(problem)
    if is_local(config.audit_path):
        return AuditStore(config.audit_path)
    from airflow.sdk import ObjectStoragePath

    return AuditStore(cast("UPath", ObjectStoragePath(config.audit_path)))  # a UPath at runtime
