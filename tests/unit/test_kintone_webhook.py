"""kintone_webhook: what a webhook body means (trigger, /sync request, ignore) and the answers' texts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from idc_sync.config import SyncConfig
from idc_sync.kintone_webhook import answer_text, decide, remember, started_text, verdict_for

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
CONFIG = SyncConfig(permission_sets_app_id="1", assignments_app_id="2")


def _record(kind: str, app: str = "2", rid: str = "5") -> dict[str, Any]:
    return {
        "id": "w1",
        "type": kind,
        "app": {"id": app, "name": "x"},
        "record": {"$id": {"type": "__ID__", "value": rid}},
    }


def _comment(text: str, mentions: list[Any] | None = None, app: str = "2") -> dict[str, Any]:
    return {
        "id": "w2",
        "type": "ADD_RECORD_COMMENT",
        "app": {"id": app, "name": "x"},
        "record": {"$id": {"type": "__ID__", "value": "5"}},
        "comment": {
            "id": "31",
            "text": text,
            "creator": {"code": "erin", "name": "Erin"},
            "mentions": mentions or [],
        },
    }


@pytest.mark.parametrize("kind", ["ADD_RECORD", "UPDATE_RECORD"])
def test_record_changes_in_either_app_trigger(kind: str) -> None:
    for app in ("1", "2"):
        decision = decide(_record(kind, app), CONFIG, now=NOW)
        assert decision.trigger and decision.request is None and decision.webhook_id == "w1"


def test_a_deletion_triggers_with_its_record_id() -> None:
    body = {"id": "w3", "type": "DELETE_RECORD", "app": {"id": "2"}, "recordId": "9", "deletedAt": "x"}
    decision = decide(body, CONFIG, now=NOW)
    assert decision.trigger and decision.reason == "DELETE_RECORD of record 9"


def test_sync_comment_triggers_and_becomes_a_request_even_after_kintones_mention_line() -> None:
    for text, mentions in (
        ("/sync", []),
        ("  /SYNC \n", []),
        ("Erin \n/sync", [{"code": "erin", "type": "USER"}]),
    ):
        decision = decide(_comment(text, mentions), CONFIG, now=NOW)
        assert decision.trigger, text
        assert decision.request is not None
        assert decision.request.model_dump() == {
            "app_id": "2",
            "record_id": "5",
            "comment_id": "31",
            "requested_by": "erin",
            "at": NOW,
        }
        assert decision.request.name == "state/sync_requests/2-5-31.json"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            _comment("[idc-sync] このレコードの内容を反映できませんでした。 /sync"),
            "a comment that is not /sync",
        ),
        (_comment("please /sync"), "a comment that is not /sync"),
        (_record("ADD_RECORD", app="7"), "app 7 is not one of the two apps"),
        (_record("UPDATE_STATUS"), "UPDATE_STATUS does not change access"),
    ],
)
def test_everything_else_is_ignored_with_its_reason(body: dict[str, Any], reason: str) -> None:
    decision = decide(body, CONFIG, now=NOW)
    assert not decision.trigger and decision.reason == reason


@pytest.mark.parametrize("body", [None, [], {"type": "ADD_RECORD"}, {"app": {"id": "2"}}, "x"])
def test_a_body_that_is_not_a_webhook_is_ignored_not_raised(body: Any) -> None:
    decision = decide(body, CONFIG, now=NOW)
    assert not decision.trigger and decision.reason.startswith("not a kintone webhook body")


def test_replays_are_recognised_and_the_memory_is_bounded() -> None:
    new, seen = remember({}, "a")
    assert new and seen == {"ids": ["a"]}
    again, same = remember(seen, "a")
    assert not again and same == seen
    memory: dict[str, Any] = {}
    for n in range(2100):
        _, memory = remember(memory, str(n))
    assert len(memory["ids"]) == 2000 and memory["ids"][0] == "100"


def test_answers_per_verdict_and_language() -> None:
    assert (
        verdict_for("assignments:5", changed={"assignments:5"}, with_problems=set(), run_failed=False)
        == "changed"
    )
    assert (
        verdict_for(
            "assignments:5", changed={"assignments:5"}, with_problems={"assignments:5"}, run_failed=True
        )
        == "problems"
    )
    assert verdict_for("assignments:5", changed=set(), with_problems=set(), run_failed=True) == "failed"
    assert verdict_for("assignments:5", changed=set(), with_problems=set(), run_failed=False) == "unchanged"
    assert answer_text("unchanged", "en", "https://airflow/run").splitlines() == [
        "✅ Sync finished: nothing to change for this record (it is already in place).",
        "https://airflow/run",
    ]
    assert started_text("ja+en").startswith("👀 同期を開始しました") and "👀 Sync started" in started_text(
        "ja+en"
    )
