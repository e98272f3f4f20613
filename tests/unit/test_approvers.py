"""Who may answer the approval of withheld deletions: ``approvers`` in $IDC_SYNC_CONFIG -> HITL assigned_users."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from idc_sync_airflow import settings

REPO = Path(__file__).resolve().parents[2]


def _approval_dag():
    spec = importlib.util.spec_from_file_location(
        "idc_sync_approval_under_test", REPO / "dags/idc_sync_approval.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module.idc_sync_approval()


def test_anyone_may_answer_when_no_approvers_are_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({}))
    assert settings.approvers() is None
    assert _approval_dag().get_task("approve_deletions").assigned_users is None


def test_configured_approvers_become_the_assigned_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDC_SYNC_CONFIG", json.dumps({"approvers": ["alice", " ", "bob"]}))
    expected = [{"id": "alice", "name": "alice"}, {"id": "bob", "name": "bob"}]
    assert settings.approvers() == expected
    assert _approval_dag().get_task("approve_deletions").assigned_users == expected
