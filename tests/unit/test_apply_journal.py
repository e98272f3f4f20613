"""apply_journal: what a run killed mid-apply leaves to the next one — pairs to read again, and the
"your access is live" news its own notify never gave."""

from __future__ import annotations

from idc_sync.access_news import access_comments, including_owed
from idc_sync.apply_journal import ApplyJournal, JournalWriter, news_told, owed_news
from idc_sync.model import AssignmentOp, OpKind, OpResult, Plan, RecordRef, op_key
from tests.unit.builders import A1, A2, A3, held, observed, ps_arn, state

REC = RecordRef(app="assignments", app_id="2", record_id="7", mentions=("alice",))


def create(account: str, who: str = "alice", pid: str = "u-alice") -> AssignmentOp:
    return AssignmentOp(
        key=op_key(
            OpKind.CREATE_ASSIGNMENT, "Dev", account_id=account, principal_type="USER", principal_name=who
        ),
        kind=OpKind.CREATE_ASSIGNMENT,
        permission_set_name="Dev",
        permission_set_arn=None,  # a set created in the same run: its ARN is found by name
        account_id=account,
        principal_type="USER",
        principal_id=pid,
        principal_name=who,
        records=[REC],
    )


def _writer(saved: list[ApplyJournal], plan: Plan, run_id: str = "killed") -> JournalWriter:
    return JournalWriter(
        run_id,
        plan,
        save_journal=lambda j: saved.append(j.model_copy(deep=True)),
        load_cache=lambda: None,
        save_cache=lambda _c: None,
    )


def test_a_killed_run_leaves_its_creations_to_be_announced_by_the_next_run() -> None:
    made, pending = create(A1), create(A2)
    saved: list[ApplyJournal] = []
    writer = _writer(saved, Plan(operations=[made, pending]))
    writer.on_start(made, f"{A1}|{ps_arn(1)}")
    writer.on_start(pending, f"{A2}|{ps_arn(1)}")
    journal = ApplyJournal.model_validate_json(saved[-1].model_dump_json())  # what the next run reads
    # the next run read A1's pair again and found alice there; A2's request never landed
    now = observed([state("Dev", 1)], [held(A1)])
    owed = owed_news(journal, "next", now)
    assert [op.key for op in owed] == [made.key]
    assert owed_news(journal, "killed", now) == []  # its own run (a retry) does not owe itself

    # the next run planned nothing for it (already in place): the record still hears the news once
    plan, results = including_owed(Plan(), [], owed)
    [comment] = access_comments(plan, results, language="en", live_records={REC.key})
    assert comment.record_key == REC.key and A1 in comment.text and A2 not in comment.text


def test_a_run_that_ends_its_apply_tells_its_own_news_and_leaves_none() -> None:
    made = create(A3)
    saved: list[ApplyJournal] = []
    writer = _writer(saved, Plan(operations=[made]))
    writer.on_start(made, f"{A3}|{ps_arn(1)}")
    writer.close([OpResult(key=made.key, kind=made.kind, status="succeeded")])
    assert list(saved[-1].announce) == [made.key]  # owed until this run's notify has told it
    told = news_told(saved[-1], "killed")
    assert told is not None and told.announce == {}
    assert owed_news(told, "next", observed([state("Dev", 1)], [held(A3)])) == []
    assert news_told(told, "killed") is None and news_told(saved[-1], "other run") is None


def test_owed_news_is_not_repeated_when_this_run_made_it_itself() -> None:
    made = create(A1)
    plan, results = including_owed(
        Plan(operations=[made]), [OpResult(key=made.key, kind=made.kind, status="succeeded")], [made]
    )
    assert len(plan.operations) == 1 and [r.status for r in results] == ["succeeded"]
    # planned again by this run but already in place (the killed run's request landed): told once
    plan, results = including_owed(
        Plan(operations=[made]), [OpResult(key=made.key, kind=made.kind, status="already_in_place")], [made]
    )
    assert len(plan.operations) == 1
    assert len(access_comments(plan, results, language="en", live_records={REC.key})) == 1


def test_a_retry_of_the_same_run_continues_the_killed_tries_journal_and_tells_its_creations() -> None:
    """The worker running apply died after sending A1's and A2's creations; the retry (same run) finds A1
    in place and creates A2 itself: both records hear the news, A1's although this try did not make it.
    The same holds when the dead worker's orphaned task runner finished the apply alone (its journal is
    closed, its news still owed)."""
    made, landed_later, untouched = create(A1), create(A2, "bob", "u-bob"), create(A3, "carol", "u-carol")
    plan = Plan(operations=[made, landed_later, untouched])
    saved: list[ApplyJournal] = []
    first = _writer(saved, plan, run_id="r1")
    first.on_start(made, f"{A1}|{ps_arn(1)}")
    first.on_start(landed_later, f"{A2}|{ps_arn(1)}")
    left = ApplyJournal.model_validate_json(saved[-1].model_dump_json())

    retry = JournalWriter(
        "r1",
        plan,
        save_journal=lambda j: saved.append(j.model_copy(deep=True)),
        load_cache=lambda: None,
        save_cache=lambda _c: None,
        earlier=left,
    )
    assert set(retry.journal.started) == {made.key, landed_later.key}  # still unknown until this try ends
    retry.on_start(untouched, f"{A3}|{ps_arn(1)}")
    owed = retry.close(
        [
            OpResult(key=made.key, kind=made.kind, status="already_in_place"),
            OpResult(key=landed_later.key, kind=landed_later.kind, status="succeeded"),
            OpResult(key=untouched.key, kind=untouched.kind, status="failed"),
        ]
    )
    assert [op.key for op in owed] == [made.key]  # A2 this try made itself; A3 is not live
    assert set(saved[-1].started) == {untouched.key}  # a failed request may still have changed its pair

    orphan = _writer([], plan, run_id="r1")
    orphan.on_start(made, f"{A1}|{ps_arn(1)}")
    orphan.close([OpResult(key=made.key, kind=made.kind, status="succeeded")])  # its results are lost
    after_orphan = JournalWriter(
        "r1",
        plan,
        save_journal=lambda _j: None,
        load_cache=lambda: None,
        save_cache=lambda _c: None,
        earlier=orphan.journal,
    )
    assert after_orphan.close([OpResult(key=made.key, kind=made.kind, status="already_in_place")]) == [made]

    # another run's journal is not continued: its news is the next run's observe's to tell
    other = JournalWriter(
        "r2",
        plan,
        save_journal=lambda _j: None,
        load_cache=lambda: None,
        save_cache=lambda _c: None,
        earlier=left,
    )
    assert other.journal.started == {} and other.close([]) == []
