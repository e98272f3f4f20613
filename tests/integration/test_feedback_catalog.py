"""Issue 5's Done-when: a catalog of bad records (tests/integration/bad_records.py) loaded at once into the
sandbox's kintone, the real DAG run three times, then once more after one record is fixed.

Per bad record: exactly one comment (in Japanese, the default), with the expected text and the right
mentions, across three runs; the pipeline's comments never change a record's revision; admin-level
problems (Access Analyzer down) go to Slack and to no record; unchanged inline policies cost no Access
Analyzer call; after a fix, exactly one "resolved" comment; the good records are synced in the same runs.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from bad_records import ASG, CATALOG, GHOST, GOOD, PS, expected_mentions, expiring_date, kinds
from demo_grants import SEEDED, WANTED

from idc_sandbox import kintone as kintone_sandbox
from idc_sandbox.core import FaultRule

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RESOLVED_JA = "[idc-sync] 問題は解消され"


def _state(run):
    return str(run.state).split(".")[-1].lower()


def _add(harness, entry):
    sb = harness.sandbox
    fields = dict(entry["fields"])
    if fields.get("expires_on") == "@expiring":
        fields["expires_on"] = expiring_date()
    at = None
    if entry.get("age_days"):
        at = dt.datetime.now(dt.UTC) - dt.timedelta(days=entry["age_days"])
    return kintone_sandbox.add_record(
        sb,
        harness.app_id(entry["app"]),
        fields,
        user_code=entry["by"],
        at=at,
        check_lookup=entry.get("check_lookup", True),
    )


def _revisions(harness):
    out = {}
    for app in harness.sandbox.world.kintone.apps.values():
        for rid, record in app.records.items():
            out[(app.id, rid)] = record["$revision"]["value"]
    return out


def _comments_by_record(harness):
    out: dict[tuple[int, int], list[tuple[str, list[str]]]] = {}
    for app_id, record_id, text, mentions in harness.comments():
        out.setdefault((app_id, record_id), []).append((text, mentions))
    return out


def test_catalog_of_bad_records_gets_one_right_comment_each_and_one_resolved_after_a_fix(harness):
    assert len(kinds()) >= 25, kinds()
    sb = harness.sandbox
    # the ghost owner exists when the record is saved and leaves kintone afterwards
    sb.world.kintone.users[GHOST["ghost"]] = "Ghost Owner"
    ids: dict[str, tuple[int, int]] = {}
    for entry in [e for e in CATALOG if e["app"] == PS] + [g for g in GOOD if g["app"] == PS]:
        rid = _add(harness, entry)
        if "key" in entry:
            ids[entry["key"]] = (harness.app_id(PS), rid)
    for entry in [e for e in CATALOG if e["app"] == ASG] + [g for g in GOOD if g["app"] == ASG]:
        rid = _add(harness, entry)
        if "key" in entry:
            ids[entry["key"]] = (harness.app_id(ASG), rid)
    del sb.world.kintone.users[GHOST["ghost"]]
    revisions = _revisions(harness)

    # ---------------------------------------------------------------- run 1: everything is said once
    assert _state(harness.run()) == "success"
    # ---------------------------------------------------------------- run 2: nothing changed, nothing said
    sb.calls.clear()
    assert _state(harness.run()) == "success"
    analyzer_calls = sb.calls.calls("accessanalyzer")
    assert analyzer_calls == [], "unchanged inline policies must be answered from the cache"
    # ---------------------------------------------------------------- run 3: Access Analyzer is down and a
    # new permission set record arrives: an admin problem (Slack), not a record problem
    late = {
        "app": PS,
        "by": "olivia@example.com",
        "fields": {
            "name": "CatLate",
            "session_duration": "PT1H",
            "managed_policies": "ReadOnlyAccess",
            "inline_policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}],
                }
            ),
            "owners": ["peggy@example.com"],
        },
    }
    late_id = _add(harness, late)
    revisions[(harness.app_id(PS), late_id)] = "1"
    slack_before = len(harness.slack())
    sb.faults.add(FaultRule(service="accessanalyzer", kind="access_denied"))
    assert _state(harness.run()) == "success"
    sb.faults.clear()

    # ---------------------------------------------------------------- after three runs
    by_record = _comments_by_record(harness)
    report = []
    for entry in CATALOG:
        key = ids[entry["key"]]
        got = by_record.get(key, [])
        texts = [t for t, _ in got]
        if len(got) != 1:
            report.append(f"{entry['key']}: {len(got)} comments {texts}")
            continue
        text, mentions = got[0]
        if entry["ja"] not in text:
            report.append(f"{entry['key']}: expected {entry['ja']!r} in {text!r}")
        if mentions != expected_mentions(entry):
            report.append(f"{entry['key']}: mentions {mentions} != {expected_mentions(entry)}")
        if entry.get("link") and "詳細: https://docs.aws.amazon.com/" not in text:
            report.append(f"{entry['key']}: no learn-more link in {text!r}")
        severity = entry.get("severity")
        if severity == "pending" and not text.startswith("[idc-sync] このレコードの一部は反映待ちです"):
            report.append(f"{entry['key']}: pending not phrased as waiting: {text!r}")
        if severity == "info" and not text.startswith("[idc-sync] このレコードについてのお知らせです"):
            report.append(f"{entry['key']}: note not phrased as a note: {text!r}")
    assert not report, "\n".join(report)
    # no record at all (demo ones included) was told anything twice
    assert all(len(items) == 1 for items in by_record.values()), {
        k: [t[:60] for t, _ in v] for k, v in by_record.items() if len(v) > 1
    }
    # the good record heard only that its permission set is live (issue 13), no problem
    [(late_text, _)] = by_record[(harness.app_id(PS), late_id)]
    assert late_text.startswith(
        "アクセス権を AWS IAM Identity Center に反映しました。\n\n- 権限セット CatLate を作成しました。\n\n"
        "実行の詳細: http://localhost:8080/dags/idc_sync/runs/"
    ), late_text
    # the pipeline's comments changed no record's revision (they are not user edits)
    assert _revisions(harness) == revisions
    # the admin problem went to Slack
    run3_slack = harness.slack()[slack_before:]
    assert any("Access Analyzer" in json.dumps(m, ensure_ascii=False) for m in run3_slack), run3_slack
    # the good records (and the warnings-only ones) are synced, and nothing else is
    expected = SEEDED | WANTED
    for entry in [*CATALOG, *GOOD]:
        synced = entry.get("synced")
        if isinstance(synced, str):
            assert harness.permission_set(synced) is not None, synced
        elif isinstance(synced, tuple):
            expected |= {synced}
        elif isinstance(synced, list):
            expected |= set(synced)
    assignments = harness.assignments()
    assert assignments == expected, (assignments - expected, expected - assignments)
    assert harness.permission_set("CatLate") is not None  # local checks only while Access Analyzer is down
    # blocked permission sets were not created
    for name in ("CatTypo", "CatAnalyzerError", "CatPassRole", "CatTooMany", "CatNotJson"):
        assert harness.permission_set(name) is None, name

    # ---------------------------------------------------------------- run 4: one record is fixed
    app_id, rid = ids["managed_policy_typo"]
    kintone_sandbox.update_record(
        sb, app_id, rid, {"managed_policies": "PowerUserAccess"}, user_code="grace@example.com"
    )
    before = harness.comments()
    assert _state(harness.run()) == "success"
    new = harness.comments()[len(before) :]
    assert [(a, r) for a, r, _, _ in new] == [(app_id, rid)], new
    _, _, text, mentions = new[0]
    assert text.startswith(RESOLVED_JA), text
    assert mentions == ["grace@example.com", "heidi@example.com"]
    assert harness.permission_set("CatTypo") is not None
