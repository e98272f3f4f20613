"""Incremental kintone reads (``idc_sync.kintone_incremental``) against the sandbox kintone over real HTTP.

Every read is checked two ways: its records equal a fresh ``get_all_records`` (same records, same order,
same wire shape), and its request count equals what the sandbox logged. Time moves only on the sandbox's
``ManualClock`` (record stamps) and the ``now`` handed to the reader, both from the same clock.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest

from idc_sandbox import kintone as sk
from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sync.config import SyncConfig
from idc_sync.kintone_apps import load_app_definition
from idc_sync.kintone_client import KintoneClient, KintoneError
from idc_sync.kintone_incremental import ReadStats, RecordCache, read_records

TOKEN = "ps-token-incremental-0123456789SECRET"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a minute boundary
EVERY_10_MIN = 600.0
N = 1_200  # three pages of 500


class Env:
    """A permission-sets app (it has a subtable) with ``N`` records, and a client with its API token."""

    def __init__(self, sandbox: Sandbox, url: str, n: int = N) -> None:
        self.sandbox = sandbox
        sandbox.clock = ManualClock(start=START)
        self.clock = sandbox.clock
        with sandbox.lock:
            sandbox.world.kintone.users.update({"alice": "Alice", "bob": "Bob"})
            definition = load_app_definition("permission_sets")
            self.app = sk.create_app(sandbox, "IdC permission sets", fields=definition["properties"])
            base = sandbox.now() - dt.timedelta(days=3, minutes=n)  # one a minute, the last 3 days ago
            for i in range(n):
                fields: dict[str, Any] = {"name": f"PS{i:05d}", "session_duration": "PT1H"}
                if i % 3 == 0:
                    fields["customer_managed_policies"] = [{"cmp_name": f"policy-{i}", "cmp_path": "/"}]
                    fields["owners"] = ["alice"]
                sk.build_record(
                    sandbox, self.app, fields, user_code="alice", at=base + dt.timedelta(minutes=i)
                )
        sk.add_api_token(sandbox, self.app.id, TOKEN)
        self.app_id = str(self.app.id)
        self.client = KintoneClient(url, {self.app_id: TOKEN}, sleep=lambda _s: None)

    def now(self) -> dt.datetime:
        return self.sandbox.now()

    def later(self, seconds: float = EVERY_10_MIN) -> None:
        self.clock.advance(seconds)

    def read(
        self, cache: RecordCache | None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], RecordCache, ReadStats]:
        """One read; checks the request count against the sandbox's log and the cache's JSON round trip."""
        before = len(self.sandbox.calls.calls("kintone"))
        records, new_cache, stats = read_records(self.client, self.app_id, cache, now=self.now(), **kwargs)
        assert stats.requests == len(self.sandbox.calls.calls("kintone")) - before
        assert stats.records == len(records)
        saved = json.dumps(new_cache.model_dump(mode="json"), separators=(",", ":"))
        return records, RecordCache.model_validate(json.loads(saved)), stats

    def truth(self) -> list[dict[str, Any]]:
        return self.client.get_all_records(self.app_id)

    def edit(self, record_id: int, at: dt.datetime | None = None, **fields: Any) -> None:
        sk.update_record(self.sandbox, self.app_id, record_id, fields, user_code="bob", at=at)

    def add(self, name: str, at: dt.datetime | None = None) -> int:
        return sk.add_record(
            self.sandbox, self.app_id, {"name": name, "session_duration": "PT2H"}, user_code="bob", at=at
        )

    def delete(self, record_id: int) -> None:
        sk.delete_record(self.sandbox, self.app_id, record_id)


@pytest.fixture
def env(sandbox: Sandbox, sandbox_url: str) -> Env:
    return Env(sandbox, sandbox_url)


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["$id"]["value"]) for r in records]


def warm(env: Env) -> RecordCache:
    """A cache from a first (full) read, then 10 minutes pass."""
    _, cache, stats = env.read(None)
    assert stats.mode == "full"
    env.later()
    return cache


# --------------------------------------------------------------------------- full reads
def test_first_read_is_full_and_equals_get_all_records(env: Env) -> None:
    records, cache, stats = env.read(None)
    assert records == env.truth()
    assert ids(records) == sorted(ids(records), reverse=True)  # kintone's default order, $id desc
    # two probes (the update-time field is learned from the first) + cursor: create + 3 pages
    assert (stats.mode, stats.requests, stats.reason) == ("full", 6, "no cache")
    entry = cache.apps[env.app_id]
    assert (entry.update_field, entry.watermark) == ("Updated_datetime", "2027-01-12T07:59:00Z")
    assert entry.wire_records() == records  # the compact cache rebuilds the wire shape exactly
    # a full read knowing the field (full=True, the full_resync param) probes once
    _, _, stats = env.read(cache, full=True)
    assert (stats.mode, stats.requests, stats.reason) == ("full", 5, "full read requested")


def test_cache_is_compact_json(env: Env) -> None:
    records, cache, _ = env.read(None)
    wire = len(json.dumps(records, separators=(",", ":"), ensure_ascii=False))
    cached = len(json.dumps(cache.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False))
    assert cached < 0.6 * wire


def test_unusable_caches_read_in_full(env: Env) -> None:
    _, cache, _ = env.read(None)
    old = cache.model_copy(update={"version": 0})
    records, _, stats = env.read(old)
    assert (stats.mode, stats.reason) == ("full", "cache version 0 (expected 1)")
    assert records == env.truth()
    entry = cache.apps[env.app_id].model_copy(update={"base_url": "https://other.cybozu.com"})
    _, _, stats = env.read(cache.model_copy(update={"apps": {env.app_id: entry}}))
    assert (stats.mode, stats.reason) == ("full", "the cache is of another kintone domain")
    _, _, stats = env.read(RecordCache())
    assert (stats.mode, stats.reason) == ("full", "the app is not in the cache")


# --------------------------------------------------------------------------- incremental reads
def test_no_change_read_costs_two_requests_and_returns_the_same_records(env: Env) -> None:
    cache = warm(env)
    for _ in range(3):
        records, cache, stats = env.read(cache)
        assert (stats.mode, stats.requests, stats.changed) == ("incremental", 2, 0)
        assert records == env.truth()
        env.later()


def test_edit_is_picked_up(env: Env) -> None:
    cache = warm(env)
    env.edit(4, description="now described", customer_managed_policies=[{"cmp_name": "x", "cmp_path": "/a/"}])
    env.later(1)
    records, cache, stats = env.read(cache)
    assert (stats.mode, stats.requests, stats.changed) == ("incremental", 2, 1)
    assert records == env.truth()
    (edited,) = [r for r in records if r["$id"]["value"] == "4"]
    assert edited["description"]["value"] == "now described"
    assert edited["customer_managed_policies"]["value"][0]["value"]["cmp_path"]["value"] == "/a/"


def test_addition_is_picked_up(env: Env) -> None:
    cache = warm(env)
    new_id = env.add("Fresh")
    records, cache, stats = env.read(cache)
    assert (stats.mode, stats.requests, stats.changed) == ("incremental", 2, 1)
    assert ids(records)[0] == new_id and records == env.truth()


def test_deletion_is_found_by_the_count(env: Env) -> None:
    cache = warm(env)
    env.delete(700)
    records, cache, stats = env.read(cache)
    assert (stats.mode, stats.deleted) == ("incremental+id_search", 1)
    assert 700 not in ids(records) and records == env.truth()
    # probe + changed + bisection: (0,600] counts 600 (= cache) -> (600,] holds 599 > 500: (600,900]
    # counts 299 <= 500 and lists it -> (900,] 300 = cache. Listing every id would be 3 requests here,
    # 100 at 50,000 records; the bisection grows with log2(records / 500).
    assert stats.requests == 4
    _, _, stats = env.read(cache)
    assert (stats.mode, stats.requests) == ("incremental", 2)


def test_all_records_deleted(env: Env) -> None:
    cache = warm(env)
    for rid in range(1, N + 1):
        env.delete(rid)
    records, _, stats = env.read(cache)
    assert (records, stats.mode, stats.deleted) == ([], "incremental+id_search", N)


def test_add_plus_delete_in_one_window(env: Env) -> None:
    cache = warm(env)
    # a normal addition is returned by the update-time query, so the count shows the deletion at once
    env.add("Replacement")
    env.delete(10)
    records, cache, stats = env.read(cache)
    assert (stats.mode, stats.changed, stats.deleted) == ("incremental+id_search", 1, 1)
    assert records == env.truth()
    env.later()
    # an addition the update-time query cannot see (the API lets a migration set an old update time)
    # and a deletion: the counts still agree, so only the id pass finds them, once it is due
    hidden = env.add("Migrated", at=env.now() - dt.timedelta(days=30))
    env.delete(11)
    records, cache, stats = env.read(cache, id_pass_every=dt.timedelta(hours=1))
    assert (stats.mode, stats.requests) == ("incremental", 2)
    assert 11 in ids(records) and hidden not in ids(records)  # stale until the id pass
    env.later(3600)
    records, cache, stats = env.read(cache, id_pass_every=dt.timedelta(hours=1))
    assert (stats.mode, stats.deleted, stats.fetched) == ("incremental+id_pass", 1, 1)
    assert 11 not in ids(records) and hidden in ids(records) and records == env.truth()
    assert stats.requests == 2 + 3 + 1  # probe, changed, 3 pages of ids, the hidden record by id
    env.later()
    _, _, stats = env.read(cache, id_pass_every=dt.timedelta(hours=1))
    assert (stats.mode, stats.requests) == ("incremental", 2)


def test_records_saved_in_the_watermark_minute_are_not_missed(env: Env) -> None:
    env.edit(1, description="a")  # 08:00:00 -> the probe's newest record, watermark 08:00
    env.later(10)
    _, cache, _ = env.read(None)
    assert cache.apps[env.app_id].watermark == "2027-01-15T08:00:00Z"
    env.later(30)
    env.edit(2, description="saved at 08:00:40, stamped 08:00")
    env.later(10)
    # even without any overlap: ">=" the watermark minute keeps it
    records, cache, stats = env.read(cache, overlap=dt.timedelta(0))
    assert (stats.mode, stats.changed) == ("incremental", 1)
    assert records == env.truth()


def test_late_commit_is_caught_by_the_overlap_and_otherwise_by_the_id_pass(env: Env) -> None:
    env.edit(1, description="a")
    env.later(60)
    _, cache, _ = env.read(None)  # watermark 08:00
    # a save that started at 07:57 (its stamp) but committed after the probe
    env.edit(3, at=env.now() - dt.timedelta(minutes=4), description="late")
    records, _, stats = env.read(cache)  # default overlap: 5 minutes
    assert (stats.mode, stats.changed) == ("incremental", 1) and records == env.truth()
    records, cache, stats = env.read(cache, overlap=dt.timedelta(0))
    assert (stats.mode, stats.changed) == ("incremental", 0) and records != env.truth()  # missed...
    env.later(2 * 3600)
    records, _, stats = env.read(cache, overlap=dt.timedelta(0))
    assert (stats.mode, stats.fetched) == ("incremental+id_pass", 1)  # ...until its $revision differs
    assert records == env.truth()


def test_a_record_stamped_in_the_future_does_not_move_the_watermark(env: Env) -> None:
    env.edit(5, at=env.now() + dt.timedelta(days=365), description="from the future")
    _, cache, _ = env.read(None)
    assert cache.apps[env.app_id].watermark == "2027-01-15T08:00:00Z"  # the clock, not 2028
    env.later()
    env.edit(6, description="today")
    records, _, stats = env.read(cache)
    assert (stats.mode, stats.changed) == ("incremental", 1) and records == env.truth()


def test_returned_records_are_not_the_cache(env: Env) -> None:
    cache = warm(env)
    records, cache, _ = read_records(env.client, env.app_id, cache, now=env.now())
    (record,) = [r for r in records if r["$id"]["value"] == "1"]
    record["name"]["value"] = "changed by a caller"
    record["owners"]["value"].append({"code": "mallory", "name": "M"})
    record["customer_managed_policies"]["value"][0]["value"]["cmp_name"]["value"] = "changed"
    assert cache.apps[env.app_id].wire_records() == env.truth()


# --------------------------------------------------------------------------- never a partial view
def test_short_cursor_read_without_cache_fails_loudly(env: Env) -> None:
    env.sandbox.faults.add(FaultRule("kintone", "short_read", operation="records/cursor.json", count=1))
    with pytest.raises(KintoneError) as info:
        env.read(None)
    assert info.value.code == "INCOMPLETE_READ"


def fault_before(env: Env, when: Any) -> None:
    """Adds a one-time ``short_read`` on ``records.json`` just before the first request ``when`` accepts
    (a ``get_records`` call's keyword arguments)."""
    original = env.client.get_records
    state = {"armed": True}

    def get_records(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if state["armed"] and when(kwargs):
            state["armed"] = False
            env.sandbox.faults.add(FaultRule("kintone", "short_read", operation="records.json", count=1))
        return original(*args, **kwargs)

    env.client.get_records = get_records  # type: ignore[method-assign]


def listing(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("fields") == ["$id", "$revision"]


def test_short_id_listing_falls_back_to_a_full_read(env: Env) -> None:
    cache = warm(env)
    env.later(3 * 3600)  # the id pass is due
    fault_before(env, listing)  # its first page lacks a record
    records, _, stats = env.read(cache)
    assert stats.mode == "full"
    assert stats.reason == "listing ids returned 499 of the 1200 records kintone counts"
    assert records == env.truth()
    assert stats.requests == 2 + 1 + 5  # probe, changed, the short page; then probe + cursor (1 + 3)


def test_short_range_listing_in_the_search_falls_back_to_a_full_read(env: Env) -> None:
    cache = warm(env)
    env.delete(1_100)
    calls = {"n": 0}

    def second_listing(kwargs: dict[str, Any]) -> bool:
        calls["n"] += listing(kwargs)
        return calls["n"] == 2  # the search's second request lists (600, 900]

    fault_before(env, second_listing)
    records, _, stats = env.read(cache)
    assert stats.mode == "full"
    assert stats.reason == "ids (600, 900]: kintone counts 300 records but listed 299"
    assert records == env.truth()


def test_short_changed_page_is_caught_by_the_count(env: Env) -> None:
    cache = warm(env)
    env.edit(20, description="x")
    env.edit(21, description="y")
    new_id = env.add("New")
    # the changed query's page silently lacks its last record (the new one, highest $id)
    fault_before(env, lambda kwargs: ">=" in str(kwargs.get("query")))
    records, _, stats = env.read(cache)
    # the count is one short: the search finds the missing record and reads it by id
    assert (stats.mode, stats.changed, stats.fetched) == ("incremental+id_search", 2, 1)
    assert new_id in ids(records) and records == env.truth()


def test_records_the_cache_lacks_are_fetched_or_read_in_full(env: Env) -> None:
    cache = warm(env)
    entry = cache.apps[env.app_id]
    # 11 records lost (1,200 is re-read anyway: it was saved within the overlap before the watermark)
    lost = {k: v for k, v in entry.records.items() if int(k) % 100 or int(k) > 1_100}
    damaged = cache.model_copy(update={"apps": {env.app_id: entry.model_copy(update={"records": lost})}})
    records, _, stats = env.read(damaged)
    assert (stats.mode, stats.fetched) == ("incremental+id_search", 11) and records == env.truth()
    most = {k: v for k, v in entry.records.items() if int(k) > 1_100}  # 1,100 lost: a full read is cheaper
    damaged = cache.model_copy(update={"apps": {env.app_id: entry.model_copy(update={"records": most})}})
    records, _, stats = env.read(damaged)
    assert (stats.mode, stats.reason) == ("full", "kintone has 1100 more records than the cache")
    assert records == env.truth() and stats.requests == 2 + 5


def test_a_form_change_reads_in_full(env: Env) -> None:
    cache = warm(env)
    with env.sandbox.lock:  # a field added in the form: kintone shows it (empty) in every record
        env.app.fields["ticket"] = {"type": "SINGLE_LINE_TEXT", "code": "ticket", "label": "Ticket"}
        for record in env.app.records.values():
            record["ticket"] = {"type": "SINGLE_LINE_TEXT", "value": ""}
    records, cache, stats = env.read(cache)
    assert stats.mode == "full" and "the app's form changed (added ['ticket']" in stats.reason
    assert records == env.truth()
    env.later()
    _, _, stats = env.read(cache)
    assert (stats.mode, stats.requests) == ("incremental", 2)


def test_a_renamed_update_time_field_reads_in_full(env: Env) -> None:
    cache = warm(env)
    with env.sandbox.lock:
        prop = env.app.fields.pop("Updated_datetime")
        env.app.fields["更新日時"] = {**prop, "code": "更新日時"}
        for record in env.app.records.values():
            record["更新日時"] = record.pop("Updated_datetime")
    records, cache, stats = env.read(cache)
    assert stats.mode == "full" and "GAIA_IQ11" in stats.reason
    assert records == env.truth() and cache.apps[env.app_id].update_field == "更新日時"
    env.later()
    env.edit(9, description="x")
    records, _, stats = env.read(cache)
    assert (stats.mode, stats.requests, stats.changed) == ("incremental", 2, 1) and records == env.truth()


# --------------------------------------------------------------------------- the budget
def test_a_day_of_runs_every_10_minutes(sandbox: Sandbox, sandbox_url: str) -> None:
    """144 runs, an edit every 5th run, the default id pass (every 2 hours): requests measured per run.

    600 records here (2 pages of ids); at 50,000 (100 pages) the same day costs 1 full read (103) +
    132 x 2 + 11 x 102 = 1,489 requests, under the 2,500 target (hourly id passes: ~2,700).
    """
    n = 600
    env = Env(sandbox, sandbox_url, n=n)
    config = SyncConfig()
    every = dt.timedelta(minutes=config.kintone_id_pass_minutes)
    overlap = dt.timedelta(minutes=config.kintone_overlap_minutes)
    cache: RecordCache | None = None
    per_mode: dict[str, list[int]] = {}
    for run in range(144):
        if run % 5 == 1:
            env.edit(run + 1, description=f"run {run}")
        _, cache, stats = env.read(cache, id_pass_every=every, overlap=overlap)
        per_mode.setdefault(stats.mode, []).append(stats.requests)
        env.later()
    pages = math.ceil(n / 500)
    assert per_mode["full"] == [2 + 1 + pages]  # two probes, the cursor
    assert per_mode["incremental"] == [2] * (143 - 11)
    assert per_mode["incremental+id_pass"] == [2 + pages] * 11  # at 2h, 4h, ... 22h
    assert sum(sum(v) for v in per_mode.values()) == 5 + 132 * 2 + 11 * 4
    _, _, stats = env.read(cache)
    assert stats.records == n
