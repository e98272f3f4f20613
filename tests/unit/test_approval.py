"""Approval decisions (grant / reject / pending), timing rules and plan staleness: pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from idc_sync import approval
from idc_sync.approval import TaskTiming, TimingError
from idc_sync.freshness import oldest, stale_plan_refusal

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
KEYS = [f"delete_assignment:22222222222{i}:Legacy:USER:u{i}" for i in range(5)]
H = dt.timedelta(hours=1)


def decide(keys=KEYS, *, requests=None, decisions=None, now=NOW, **kw):
    args = {"tripped": True, "allow_mass_delete": False, "dry_run": False}
    args.update(kw)
    return approval.decide_deletions(
        keys,
        requests=requests or {},
        decisions=decisions or {},
        now=now,
        grant_ttl=24 * H,
        pending_ttl=5 * H,
        **args,
    )


def decided(answer, keys=KEYS, at=NOW - H, by="alice"):
    fp = approval.fingerprint(keys)
    chosen = ["Approve"] if answer == "approve" else ["Reject"]
    return approval.record_decision(
        {}, fp, keys, chosen=chosen, responded_by=by, at=at, approval_run_id="deletions_x"
    )


def test_fingerprint_ignores_order_and_duplicates():
    assert approval.fingerprint(KEYS) == approval.fingerprint([*reversed(KEYS), KEYS[0]])
    assert approval.fingerprint(KEYS) != approval.fingerprint(KEYS[:-1])


@pytest.mark.parametrize("kw", [{"tripped": False}, {"allow_mass_delete": True}, {"dry_run": True}], ids=str)
def test_nothing_withheld_without_a_tripped_guard_or_with_allow_mass_delete(kw):
    d = decide(**kw)
    assert d.status == "not_needed" and d.allowed == KEYS and not d.withheld and not d.ask


def test_tripped_guard_withholds_every_deletion_and_asks_once():
    d = decide()
    assert d.ask and d.withheld == KEYS and d.allowed == [] and d.fingerprint == approval.fingerprint(KEYS)
    requests = approval.record_request(
        {}, d.fingerprint, d.withheld, now=NOW, run_id="scheduled__1", reasons=["too many"]
    )
    again = decide(requests=requests, now=NOW + dt.timedelta(minutes=10))
    assert again.status == "pending" and not again.ask and again.withheld == KEYS
    # a pending request that outlived its approval run (e.g. the trigger failed) is asked again
    assert decide(requests=requests, now=NOW + 6 * H).ask


def test_an_approve_grants_exactly_that_set_until_it_expires():
    grant = decided("approve")
    d = decide(decisions=grant)
    assert d.status == "granted" and d.allowed == KEYS and not d.withheld
    assert d.grants == [approval.fingerprint(KEYS)]
    assert decide(decisions=grant, now=NOW + 24 * H).ask  # expired: asked again


def test_new_deletions_beside_a_grant_are_withheld_and_asked_about_alone():
    extra = "delete_assignment:999999999999:Legacy:USER:zed"
    d = decide([*KEYS, extra], decisions=decided("approve"))
    assert d.allowed == KEYS and d.withheld == [extra] and d.ask
    assert d.fingerprint == approval.fingerprint([extra])


def test_a_reject_or_timeout_is_remembered_for_that_set_and_a_changed_set_asks_again():
    rejected = decided("reject")
    d = decide(decisions=rejected)
    assert d.status == "rejected" and not d.ask and d.withheld == KEYS and "rejected by alice" in d.message
    timed_out = approval.record_decision(
        {},
        approval.fingerprint(KEYS),
        KEYS,
        chosen=["Reject"],
        responded_by=None,
        at=NOW,
        approval_run_id="r",
    )
    assert timed_out[approval.fingerprint(KEYS)]["timed_out"] is True
    assert "timed out" in decide(decisions=timed_out).message
    assert decide(KEYS[:-1], decisions=rejected).ask  # another set: another question


def test_no_answer_at_all_is_a_reject_and_old_entries_are_forgotten():
    old = decided("approve", keys=["delete_assignment:a:b:USER:c"], at=NOW - dt.timedelta(days=31))
    out = approval.record_decision(
        old, "fp", KEYS, chosen=None, responded_by=None, at=NOW, approval_run_id="r"
    )
    assert list(out) == ["fp"] and out["fp"]["answer"] == "reject"


def test_decision_text_says_who_and_what_happens_next():
    approve = decided("approve")[approval.fingerprint(KEYS)]
    assert "approved by alice" in approval.decision_text(approve, 5, "manual__1")
    reject = approval.record_decision(
        {}, "fp", KEYS, chosen=["Reject"], responded_by=None, at=NOW, approval_run_id="r"
    )["fp"]
    assert "default, Reject" in approval.decision_text(reject, 5, "manual__1")


# --------------------------------------------------------------------------- timings
M = dt.timedelta(minutes=1)


def chain():
    return [
        TaskTiming("read", 10 * M, retries=1, retry_delay=M),  # 21
        TaskTiming("plan", 5 * M, upstream=("read",)),  # 5
        TaskTiming("side", 40 * M),  # 40, parallel
        TaskTiming("notify", 5 * M, upstream=("plan", "side")),
    ]


def test_longest_path_counts_attempts_retry_delays_and_slack():
    assert approval.longest_path(chain(), dt.timedelta(0)) == 45 * M
    assert approval.longest_path(chain(), M) == 47 * M


def test_a_dagrun_timeout_shorter_than_the_worst_run_is_refused():
    assert approval.check_run_timing("d", chain(), 50 * M, dt.timedelta(0)) == 45 * M
    assert approval.check_run_timing("d", chain(), None, dt.timedelta(0)) == 45 * M
    with pytest.raises(TimingError, match="d dagrun_timeout 0:40:00 is shorter"):
        approval.check_run_timing("d", chain(), 40 * M, dt.timedelta(0))


def test_the_issue_9_shape_is_refused():
    """dagrun_timeout 2 h around a 4 h approval: the run was killed and notify skipped."""
    tasks = [TaskTiming("guard", 5 * M), TaskTiming("approve", 4 * H, upstream=("guard",))]
    with pytest.raises(TimingError, match="shorter than its worst-case run"):
        approval.check_run_timing("idc_sync", tasks, 2 * H, M)


def ok_approval(**kw):
    args = {
        "response_timeout": 4 * H,
        "approval_worst": 5 * H,
        "pending_ttl": 5 * H,
        "grant_ttl": 24 * H,
        "sync_worst": 7 * H,
    }
    args.update(kw)
    approval.check_approval_timing(**args)


def test_approval_timings_consistent():
    ok_approval()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"sync_waits_for": ["approve_deletions"]}, "must not wait for a human"),
        ({"approval_worst": 3 * H, "pending_ttl": 3 * H}, "shorter than the response timeout"),
        ({"pending_ttl": 4 * H}, "asked again after"),
        ({"grant_ttl": 10 * H}, "a grant lasts"),
        ({"response_timeout": dt.timedelta(0)}, "must be positive"),
    ],
)
def test_approval_timings_inconsistent(kw, message):
    with pytest.raises(TimingError, match=message):
        ok_approval(**kw)


# --------------------------------------------------------------------------- staleness
def test_fresh_plan_is_applied_and_an_old_one_refused_with_what_to_do():
    limit = dt.timedelta(minutes=20)
    assert stale_plan_refusal(NOW - dt.timedelta(minutes=19), NOW, limit) is None
    refusal = stale_plan_refusal(NOW - dt.timedelta(minutes=45), NOW, limit)
    assert (
        refusal
        and "reads made 45 min ago" in refusal
        and "Re-run the DAG (clear from extract_kintone)" in refusal
    )
    assert "age is unknown" in (stale_plan_refusal(None, NOW, limit) or "")


def test_plan_age_is_its_oldest_read():
    a, b = NOW - H, NOW
    assert oldest([b, a]) == a
    assert oldest([a, None]) is None
