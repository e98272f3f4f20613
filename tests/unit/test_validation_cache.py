"""Access Analyzer answers cached by policy text across runs (issue 5): an unchanged inline policy costs
no call, yet its findings are reported every run (stable problems = no repeated comments)."""

from __future__ import annotations

import json
from typing import Any

from test_validation import finding

from idc_sync.config import SyncConfig
from idc_sync.model import DesiredState, PermissionSetSpec, RecordRef
from idc_sync.validation import analyzer_cache_key, validate_permission_sets
from tests.unit.fakes import FakeAnalyzer, FakeClients, FakeIam

POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]},
    indent=2,
)
REF = RecordRef(app="permission_sets", app_id="1", record_id="3", mentions=("alice",))


def _run(clients: FakeClients, cache: dict[str, Any] | None, policy: str = POLICY) -> Any:
    spec = PermissionSetSpec(name="Ops", inline_policy=policy, record=REF)
    desired = DesiredState(permission_sets={"Ops": spec})
    return validate_permission_sets(
        desired,
        clients,  # type: ignore[arg-type]
        SyncConfig(),
        analyzer_cache=cache,
    )


def test_unchanged_policy_is_answered_from_the_cache_with_the_same_problems():
    aa = FakeAnalyzer(pages=[[finding("SECURITY_WARNING", "PASS_ROLE_WITH_STAR_IN_RESOURCE", 5, 16)]])
    clients = FakeClients(iam=FakeIam(set()), accessanalyzer=aa)
    cache: dict[str, Any] = {}
    first = _run(clients, cache)
    assert len(aa.calls) == 1 and analyzer_cache_key(POLICY) in cache
    saved = json.loads(json.dumps(cache))  # what the audit store keeps between runs
    second = _run(clients, saved)
    assert len(aa.calls) == 1  # no new call
    assert [p.model_dump() for p in second.problems] == [p.model_dump() for p in first.problems]
    assert second.blocked == first.blocked == ["Ops"]
    # an edited policy is a new question
    _run(clients, saved, POLICY.replace("iam:PassRole", "iam:GetRole"))
    assert len(aa.calls) == 2


def test_failures_are_not_cached_and_rejections_are():
    clients = FakeClients(iam=FakeIam(set()), accessanalyzer=FakeAnalyzer(errors=["AccessDeniedException"]))
    cache: dict[str, Any] = {}
    report = _run(clients, cache)
    assert cache == {} and [p.code for p in report.problems] == ["access_analyzer_unavailable"]
    aa = FakeAnalyzer(errors=["ValidationException"])
    clients = FakeClients(iam=FakeIam(set()), accessanalyzer=aa)
    first = _run(clients, cache)
    second = _run(clients, cache)
    assert len(aa.calls) == 1
    assert [p.code for p in first.problems] == [p.code for p in second.problems] == ["inline_policy_rejected"]


def test_without_a_cache_every_run_asks():
    aa = FakeAnalyzer()
    clients = FakeClients(iam=FakeIam(set()), accessanalyzer=aa)
    _run(clients, None)
    _run(clients, None)
    assert len(aa.calls) == 2
