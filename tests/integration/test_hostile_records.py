"""Issue 9 (defects 2-4): hostile records beside good ones, through the real DAG against the sandbox.

One permission-set record with 3,000 nested ``[`` (RecursionError in validation and in the plan's policy
comparison used to fail the run for everyone), one with 10,000 statements (30,008 findings: a 31 s XCom
push, a notify busy for minutes) and an assignment whose account id is written in full-width digits. The
run succeeds for the good records, each hostile record gets one clear comment, and validate's XCom stays
small.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from bad_records import ASG, GOOD, PS
from demo_grants import SEEDED, WANTED

from idc_sandbox import kintone as kintone_sandbox
from idc_sync.validation import MAX_FINDINGS_PER_RECORD

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DEEP = "[" * 3000
HUGE = json.dumps({"Statement": [{}] * 10000}, separators=(",", ":"))  # 30 KB
FULLWIDTH_ACCOUNT = "\uff17" * 12  # "777777777777" in full-width digits


def _state(run: Any) -> str:
    return str(run.state).split(".")[-1].lower()


def _xcom_json(run: Any, task_id: str) -> str:
    """The serialized return value of ``task_id`` in ``run`` (read through the configured XCom backend:
    the object store holds large values, the metadata database their path)."""
    from airflow.models.xcom import XComModel
    from airflow.providers.common.io.xcom.backend import XComObjectStorageBackend
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        ).scalar_one()
    assert len(str(value)) < 2048  # the database holds a reference, whatever the value's size
    return json.dumps(XComObjectStorageBackend.deserialize_value(SimpleNamespace(value=value)))


def _add(harness: Any, app: str, fields: dict[str, Any], by: str) -> int:
    return kintone_sandbox.add_record(harness.sandbox, harness.app_id(app), fields, user_code=by)


def test_hostile_records_get_a_comment_each_and_the_good_records_sync(harness: Any) -> None:
    for entry in GOOD[:2]:  # CatGood and its assignment
        _add(harness, entry["app"], entry["fields"], entry["by"])
    owner = "hanako.suzuki@example.com"
    deep = _add(
        harness,
        PS,
        {"name": "HostileDeep", "session_duration": "PT1H", "inline_policy": DEEP, "owners": [owner]},
        "kenji.sato@example.com",
    )
    huge = _add(
        harness,
        PS,
        {"name": "HostileHuge", "session_duration": "PT1H", "inline_policy": HUGE, "owners": [owner]},
        "kenji.sato@example.com",
    )
    deep_asg = _add(
        harness,
        ASG,
        {
            "principal_type": "USER",
            "users": [owner],
            "targets": "777777777777",
            "permission_set": "HostileDeep",
        },
        "kenji.sato@example.com",
    )
    fullwidth = _add(
        harness,
        ASG,
        {
            "principal_type": "USER",
            "users": [owner],
            "targets": FULLWIDTH_ACCOUNT,
            "permission_set": "CatGood",
        },
        "kenji.sato@example.com",
    )

    run = harness.run()
    assert _state(run) == "success"

    # the good records are synced in the same run, and nothing else: the hostile permission sets are
    # neither created nor assigned, the full-width id is no account
    assert harness.assignments() == SEEDED | WANTED | set(GOOD[1]["synced"])
    assert harness.permission_set("HostileDeep") is None and harness.permission_set("HostileHuge") is None

    ps_app, asg_app = harness.app_id(PS), harness.app_id(ASG)
    by_record: dict[tuple[int, int], list[str]] = {}
    for app_id, record_id, text, _ in harness.comments():
        by_record.setdefault((app_id, record_id), []).append(text)
    deep_texts = by_record.get((ps_app, deep), [])
    huge_texts = by_record.get((ps_app, huge), [])
    fw_texts = by_record.get((asg_app, fullwidth), [])
    assert len(deep_texts) == 1, by_record
    assert "括弧の入れ子が深すぎます" in deep_texts[0], deep_texts
    assert len(huge_texts) == 1, by_record
    assert f"ほかに {30_002 - MAX_FINDINGS_PER_RECORD} 件の指摘があります" in huge_texts[0], huge_texts
    assert len(huge_texts[0]) < 10_000  # 21 problems, not 30,008
    assert len(fw_texts) == 1 and "半角数字" in fw_texts[0], fw_texts
    assert (asg_app, deep_asg) not in by_record  # its permission set's record says what to fix

    # validate's XCom stays small: the report holds 22 problems for the hostile sets, not 30,008
    validated = _xcom_json(run, "validate_policies")
    assert len(validated) < 100_000, len(validated)  # ~41 KB with the demo seed (the report alone was 12 MB)
    report = json.loads(validated)["report"]
    hostile = [
        p for p in report["problems"] if p["params"].get("permission_set") in ("HostileDeep", "HostileHuge")
    ]
    assert len(hostile) == 1 + MAX_FINDINGS_PER_RECORD + 1
    assert set(report["blocked"]) == {
        "HostileDeep",
        "HostileHuge",
        "DataAnalyst",
        "NetworkAdmin",
    }  # + the seed's

    # the next run says nothing new: the capped problems are stable, so no comment repeats
    before = len(harness.comments())
    assert _state(harness.run()) == "success"
    assert len(harness.comments()) == before
