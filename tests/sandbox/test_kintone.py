"""kintone emulation through real HTTP: auth, paging bounds, query subset, cursors, comments, writes, limits."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import requests

from idc_sandbox import kintone
from idc_sandbox.core import FaultRule, ManualClock, Sandbox
from idc_sandbox.seed import CREDENTIALS, load_named_seed, load_seed

PS_TOKEN = CREDENTIALS["kintone"]["tokens"]["1"]
ASG_TOKEN = CREDENTIALS["kintone"]["tokens"]["2"]


@pytest.fixture
def demo(sandbox: Sandbox, sandbox_url: str) -> str:
    load_seed(sandbox, load_named_seed("demo"))
    return sandbox_url


def tok(*tokens: str, lang: str | None = None) -> dict[str, str]:
    headers = {"X-Cybozu-API-Token": ",".join(tokens)}
    if lang:
        headers["Accept-Language"] = lang
    return headers


def basic(login: str, password: str) -> dict[str, str]:
    return {"X-Cybozu-Authorization": base64.b64encode(f"{login}:{password}".encode()).decode()}


def get(
    url: str, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Any:
    return requests.get(
        f"{url}/k/v1/{path}", params=params, headers=headers or tok(PS_TOKEN, ASG_TOKEN), timeout=10
    )


def send(
    method: str, url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    return requests.request(
        method, f"{url}/k/v1/{path}", json=body, headers=headers or tok(PS_TOKEN, ASG_TOKEN), timeout=10
    )


# --------------------------------------------------------------------------- auth and errors
def test_missing_auth_is_cb_au01_in_japanese_by_default(demo: str) -> None:
    r = requests.get(f"{demo}/k/v1/records.json", params={"app": 1}, timeout=10)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "CB_AU01"
    assert body["message"] == "ログインしてください。"
    assert body["id"]


def test_bad_password_and_bad_token_are_cb_wa01_in_english(demo: str) -> None:
    r = get(demo, "records.json", {"app": 1}, {**basic("admin", "wrong"), "Accept-Language": "en"})
    assert (r.status_code, r.json()["code"]) == (401, "CB_WA01")
    assert "X-Cybozu-Authorization" in r.json()["message"]
    r = get(demo, "records.json", {"app": 1}, tok("not-a-token", lang="en-US"))
    assert (r.status_code, r.json()["code"]) == (401, "CB_WA01")
    r = get(demo, "records.json", {"app": 1}, {"X-Cybozu-Authorization": "%%%not base64"})
    assert (r.status_code, r.json()["code"]) == (401, "CB_WA01")


def test_token_of_another_app_and_duplicate_tokens(demo: str) -> None:
    r = get(demo, "records.json", {"app": 2}, tok(PS_TOKEN))
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_IA02")
    r = get(demo, "records.json", {"app": 1}, tok(PS_TOKEN, PS_TOKEN))
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_DA03")
    # several apps' tokens comma-separated work for either app
    assert get(demo, "records.json", {"app": 2}, tok(PS_TOKEN, ASG_TOKEN)).status_code == 200


def test_unknown_app_record_and_invalid_json(demo: str) -> None:
    r = get(demo, "records.json", {"app": 99}, basic("admin", CREDENTIALS["kintone"]["password"]))
    assert (r.status_code, r.json()["code"]) == (404, "GAIA_AP01")
    r = get(demo, "record.json", {"app": 1, "id": 999}, tok(PS_TOKEN, lang="en"))
    assert (r.status_code, r.json()["code"]) == (404, "GAIA_RE01")
    assert "999" in r.json()["message"]
    r = requests.post(
        f"{demo}/k/v1/record.json",
        data=b"{not json",
        headers={**tok(PS_TOKEN), "Content-Type": "application/json"},
        timeout=10,
    )
    assert (r.status_code, r.json()["code"]) == (400, "CB_IJ01")


# --------------------------------------------------------------------------- records.json
def test_record_shape(demo: str) -> None:
    r = get(demo, "records.json", {"app": 1, "query": 'name = "ReadOnly"'})
    (rec,) = r.json()["records"]
    assert rec["$id"] == {"type": "__ID__", "value": "1"}
    assert rec["$revision"]["value"] == "1"
    assert rec["Created_by"] == {
        "type": "CREATOR",
        "value": {"code": "alice@example.com", "name": "Alice Anderson"},
    }
    assert rec["owners"]["value"] == [{"code": "alice@example.com", "name": "Alice Anderson"}]
    assert rec["customer_managed_policies"] == {"type": "SUBTABLE", "value": []}
    created = rec["Created_datetime"]["value"]
    assert created.endswith(":00Z") and len(created) == 20
    assert r.json()["totalCount"] is None


def test_paging_bounds_default_order_and_total_count(demo: str) -> None:
    r = get(demo, "records.json", {"app": 2, "query": "limit 501"})
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_QU01")
    r = get(demo, "records.json", {"app": 2, "query": "limit 10 offset 10001"})
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_QU02")
    r = get(demo, "records.json", {"app": 2, "query": "limit 5 offset 2", "totalCount": "true"})
    body = r.json()
    assert body["totalCount"] == "17"
    assert [x["$id"]["value"] for x in body["records"]] == ["15", "14", "13", "12", "11"]  # $id desc


def test_query_subset(demo: str) -> None:
    def ids(query: str, app: int = 2) -> list[str]:
        r = get(demo, "records.json", {"app": app, "query": query, "fields[0]": "$id"})
        assert r.status_code == 200, r.text
        return [x["$id"]["value"] for x in r.json()["records"]]

    assert ids('principal_type in ("GROUP") order by $id asc') == ["2", "4", "6", "14", "16"]
    assert ids('principal_type not in ("GROUP") and permission_set = "Developer" order by $id asc') == [
        "3",
        "10",
        "12",
    ]
    assert ids('permission_set = "NetworkAdmin" or permission_set = "DataAnalyst" order by $id') == [
        "6",
        "11",
    ]
    assert ids('targets like "ou-ab12" order by $id asc') == ["1", "2", "4", "17"]
    assert ids("$id >= 3 and $id < 6 order by $id asc") == ["3", "4", "5"]
    assert ids("Record_number <= 2 order by Record_number desc") == ["2", "1"]
    assert ids('users in ("taro.tanaka@example.com")') == ["10"]
    assert ids('Created_by in ("heidi@example.com") order by $id asc') == ["6", "9"]
    assert ids("expires_on is not empty order by $id asc") == ["12", "13"]
    assert ids('(principal_type = "GROUP" and group_name = "developers") or $id = 1 order by $id asc') == [
        "1",
        "2",
        "14",
    ]
    # updated time: the record created 30 minutes ago is the only recent one
    assert ids(
        'Updated_datetime > "' + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600)) + '"'
    ) == ["10"]
    assert ids("Created_datetime < NOW() limit 1") == ["17"]
    fields = get(demo, "records.json", {"app": 1, "fields": ["name", "$revision"], "query": "limit 1"}).json()
    assert set(fields["records"][0]) == {"name", "$revision"}


def test_query_errors(demo: str) -> None:
    r = get(demo, "records.json", {"app": 2, "query": 'nosuchfield = "x"'}, tok(ASG_TOKEN, lang="en"))
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_IQ11")
    assert "nosuchfield" in r.json()["message"]
    r = get(demo, "records.json", {"app": 2, "query": "principal_type = "})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")


# --------------------------------------------------------------------------- cursor API
def test_cursor_lifecycle(demo: str, sandbox: Sandbox) -> None:
    r = send(
        "POST",
        demo,
        "records/cursor.json",
        {"app": 2, "fields": ["$id"], "size": 5, "query": "order by $id asc"},
    )
    assert r.status_code == 200, r.text
    cursor = r.json()
    assert cursor["totalCount"] == "17"
    seen: list[str] = []
    pages = 0
    while True:
        page = get(demo, "records/cursor.json", {"id": cursor["id"]}).json()
        pages += 1
        seen += [x["$id"]["value"] for x in page["records"]]
        if not page["next"]:
            break
    assert pages == 4 and seen == [str(i) for i in range(1, 18)]
    # the cursor is gone once its last page was read
    r = get(demo, "records/cursor.json", {"id": cursor["id"]})
    assert (r.status_code, r.json()["code"]) == (404, "GAIA_RE03")
    assert sandbox.world.kintone.cursors == {}


def test_cursor_bounds_and_limit_of_ten(demo: str) -> None:
    r = send("POST", demo, "records/cursor.json", {"app": 2, "size": 501})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    r = send("POST", demo, "records/cursor.json", {"app": 2, "query": "limit 10"})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    ids = [send("POST", demo, "records/cursor.json", {"app": 2}).json()["id"] for _ in range(10)]
    r = send("POST", demo, "records/cursor.json", {"app": 1})
    assert (r.status_code, r.json()["code"]) == (429, "GAIA_TM12")
    assert send("DELETE", demo, "records/cursor.json", {"id": ids[0]}).status_code == 200
    assert send("POST", demo, "records/cursor.json", {"app": 1}).status_code == 200
    r = send("DELETE", demo, "records/cursor.json", {"id": ids[0]})
    assert r.json()["code"] == "GAIA_RE03"


def test_cursor_expiry(demo: str, sandbox: Sandbox) -> None:
    clock = sandbox.clock = ManualClock()
    ttl = sandbox.world.kintone.cursor_ttl_seconds
    assert ttl == 600  # kintone: 10 minutes after creation or the last read
    cid = send("POST", demo, "records/cursor.json", {"app": 2, "size": 2}).json()["id"]
    clock.advance(ttl - 1)
    assert get(demo, "records/cursor.json", {"id": cid}).json()["next"] is True  # a read extends the TTL
    clock.advance(ttl - 1)
    assert get(demo, "records/cursor.json", {"id": cid}).status_code == 200
    clock.advance(ttl)
    r = get(demo, "records/cursor.json", {"id": cid})
    assert (r.status_code, r.json()["code"]) == (404, "GAIA_RE03")
    # expired cursors no longer count toward the ten
    for _ in range(10):
        assert send("POST", demo, "records/cursor.json", {"app": 2}).status_code == 200
    assert send("POST", demo, "records/cursor.json", {"app": 2}).status_code == 429
    clock.advance(ttl)
    assert send("POST", demo, "records/cursor.json", {"app": 2}).status_code == 200


# --------------------------------------------------------------------------- writes
def test_token_writes_are_by_administrator_password_writes_by_the_user(demo: str, sandbox: Sandbox) -> None:
    r = send("PUT", demo, "record.json", {"app": 2, "id": 3, "record": {"reason": {"value": "by token"}}})
    assert r.json() == {"revision": "2"}
    rec = get(demo, "record.json", {"app": 2, "id": 3}).json()["record"]
    assert rec["Updated_by"]["value"]["code"] == "Administrator"
    assert rec["Created_by"]["value"]["code"] == "carol@example.com"
    sandbox.world.kintone.logins["bob@example.com"] = "pw"
    r = send(
        "PUT",
        demo,
        "record.json",
        {"app": 2, "id": 3, "record": {"reason": {"value": "by bob"}}},
        basic("bob@example.com", "pw"),
    )
    assert r.status_code == 200
    rec = get(demo, "record.json", {"app": 2, "id": 3}).json()["record"]
    assert rec["Updated_by"]["value"] == {"code": "bob@example.com", "name": "Bob Brown"}
    assert rec["$revision"]["value"] == "3"


def test_put_revision_conflict_single_and_bulk_is_atomic(demo: str) -> None:
    r = send("PUT", demo, "record.json", {"app": 2, "id": 1, "revision": 5, "record": {}})
    assert (r.status_code, r.json()["code"]) == (409, "GAIA_CO02")
    r = send(
        "PUT",
        demo,
        "records.json",
        {
            "app": 2,
            "records": [
                {"id": 1, "revision": 1, "record": {"reason": {"value": "x"}}},
                {"id": 2, "revision": 7, "record": {"reason": {"value": "y"}}},
            ],
        },
    )
    assert (r.status_code, r.json()["code"]) == (409, "GAIA_CO02")
    assert get(demo, "record.json", {"app": 2, "id": 1}).json()["record"]["$revision"]["value"] == "1"
    r = send(
        "PUT",
        demo,
        "records.json",
        {"app": 2, "records": [{"id": 1, "revision": 1, "record": {}}, {"id": 2, "record": {}}]},
    )
    assert r.json() == {"records": [{"id": "1", "revision": "2"}, {"id": "2", "revision": "2"}]}
    r = send("PUT", demo, "records.json", {"app": 2, "records": [{"id": 1, "record": {}}] * 101})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")


def test_post_validation_lookup_and_delete(demo: str) -> None:
    r = send("POST", demo, "record.json", {"app": 1, "record": {"name": {"value": "ReadOnly"}}})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    assert "record.name.value" in r.json()["errors"]  # unique
    r = send("POST", demo, "record.json", {"app": 1, "record": {"session_duration": {"value": "PT99H"}}})
    errors = r.json()["errors"]
    assert "record.name.value" in errors and "record.session_duration.value" in errors
    r = send(
        "POST",
        demo,
        "record.json",
        {
            "app": 2,
            "record": {"targets": {"value": "444444444444"}, "permission_set": {"value": "NoSuchSet"}},
        },
    )
    assert (r.status_code, r.json()["code"]) == (400, "GAIA_LO04")
    r = send(
        "POST",
        demo,
        "records.json",
        {
            "app": 2,
            "records": [
                {
                    "targets": {"value": "444444444444"},
                    "permission_set": {"value": "ReadOnly"},
                    "users": {"value": [{"code": "bob@example.com"}]},
                },
                {"targets": {"value": "555555555555"}, "permission_set": {"value": "Developer"}},
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"ids": ["18", "19"], "revisions": ["1", "1"]}
    rec = get(demo, "record.json", {"app": 2, "id": 18}).json()["record"]
    assert rec["principal_type"]["value"] == "USER"  # radio default
    assert rec["users"]["value"] == [{"code": "bob@example.com", "name": "Bob Brown"}]
    r = send("DELETE", demo, "records.json", {"app": 2, "ids": [18, 19], "revisions": [1, 2]})
    assert (r.status_code, r.json()["code"]) == (409, "GAIA_CO02")
    assert send("DELETE", demo, "records.json", {"app": 2, "ids": [18, 19]}).status_code == 200
    assert get(demo, "record.json", {"app": 2, "id": 18}).json()["code"] == "GAIA_RE01"


# --------------------------------------------------------------------------- comments
def test_comments_do_not_change_revision(demo: str, sandbox: Sandbox) -> None:
    before = get(demo, "record.json", {"app": 2, "id": 8}).json()["record"]
    r = send(
        "POST",
        demo,
        "record/comment.json",
        {
            "app": 2,
            "record": 8,
            "comment": {
                "text": "Unknown account 123456789012",
                "mentions": [{"code": "grace@example.com", "type": "USER"}],
            },
        },
    )
    assert r.status_code == 200 and r.json() == {"id": "1"}
    after = get(demo, "record.json", {"app": 2, "id": 8}).json()["record"]
    assert after["$revision"] == before["$revision"]
    assert after["Updated_datetime"] == before["Updated_datetime"]
    comments = get(demo, "record/comments.json", {"app": 2, "record": 8}).json()
    (c,) = comments["comments"]
    assert c["creator"] == {"code": "Administrator", "name": "Administrator"}
    assert c["mentions"] == [{"code": "grace@example.com", "type": "USER"}]
    assert comments["older"] is False and comments["newer"] is False
    # kintone puts the mentioned users' names in front of the text
    assert kintone.comments_of(sandbox, 2, 8)[0]["text"] == "Grace Green \nUnknown account 123456789012"


def test_comment_limits(demo: str) -> None:
    r = send("POST", demo, "record/comment.json", {"app": 2, "record": 8, "comment": {"text": "x" * 65_536}})
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    mentions = [{"code": "alice@example.com", "type": "USER"}] * 11
    r = send(
        "POST",
        demo,
        "record/comment.json",
        {"app": 2, "record": 8, "comment": {"text": "hi", "mentions": mentions}},
    )
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    r = send(
        "POST",
        demo,
        "record/comment.json",
        {"app": 2, "record": 8, "comment": {"text": "hi", "mentions": [{"code": "x", "type": "ROBOT"}]}},
    )
    assert r.status_code == 400
    r = send("POST", demo, "record/comment.json", {"app": 2, "record": 999, "comment": {"text": "hi"}})
    assert r.json()["code"] == "GAIA_RE01"
    assert (
        send(
            "POST", demo, "record/comment.json", {"app": 2, "record": 8, "comment": {"text": "x" * 65_535}}
        ).status_code
        == 200
    )


# --------------------------------------------------------------------------- limits and faults
def test_daily_limit_warns_by_default_and_can_refuse(demo: str, sandbox: Sandbox) -> None:
    sandbox.world.kintone.daily_limit = 3
    for _ in range(4):
        assert get(demo, "records.json", {"app": 1}, tok(PS_TOKEN)).status_code == 200
    assert sandbox.world.kintone.apps[1].requests_today == 4
    calls = sandbox.calls.calls("kintone", "GET records.json")
    assert [c.error for c in calls] == [None, None, None, "daily_limit_exceeded"]
    sandbox.world.kintone.daily_limit_mode = "error"
    r = get(demo, "records.json", {"app": 1}, tok(PS_TOKEN))
    assert (r.status_code, r.json()["code"]) == (429, "SANDBOX_DAILY_LIMIT")
    assert get(demo, "records.json", {"app": 2}, tok(ASG_TOKEN)).status_code == 200  # per app


def test_injected_throttle_db_lock_and_5xx(demo: str, sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule("kintone", "throttle", operation="records/cursor.json", count=1))
    r = send("POST", demo, "records/cursor.json", {"app": 2})
    assert (r.status_code, r.json()["code"]) == (429, "GAIA_TO04")
    assert r.headers["X-ConcurrencyLimit-Limit"] == "100"
    assert send("POST", demo, "records/cursor.json", {"app": 2}).status_code == 200
    sandbox.faults.add(FaultRule("kintone", "db_lock", operation="record/comment.json", count=1))
    r = send("POST", demo, "record/comment.json", {"app": 2, "record": 1, "comment": {"text": "x"}})
    assert (r.status_code, r.json()["code"]) == (520, "GAIA_DA02")
    sandbox.faults.add(FaultRule("kintone", "error5xx", count=1))
    assert get(demo, "records.json", {"app": 1}).status_code == 500
    sandbox.faults.add(FaultRule("kintone", "outage", count=1))
    assert get(demo, "records.json", {"app": 1}).status_code == 503
    ops = {(c.operation, c.status) for c in sandbox.calls.calls("kintone")}
    assert ("POST records/cursor.json", 429) in ops and ("POST record/comment.json", 520) in ops


def test_short_read_fault_returns_fewer_records_than_announced(demo: str, sandbox: Sandbox) -> None:
    """The ``short_read`` fault (control API) drops the last record of a cursor page, nothing else."""
    r = requests.post(
        f"{demo}/_sandbox/faults",
        json={"service": "kintone", "kind": "short_read", "operation": "records/cursor.json", "count": 1},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    cursor = send("POST", demo, "records/cursor.json", {"app": 2, "size": 10}).json()
    assert cursor["totalCount"] == "17"
    pages = [get(demo, "records/cursor.json", {"id": cursor["id"]}).json() for _ in range(2)]
    assert [len(p["records"]) for p in pages] == [9, 7] and [p["next"] for p in pages] == [True, False]
    faults = requests.get(f"{demo}/_sandbox/faults", timeout=10).json()["faults"]
    assert [(f["kind"], f["fired"]) for f in faults] == [("short_read", 1)]
    # the fault touches cursor pages only, with no error status anywhere
    assert get(demo, "records.json", {"app": 2}).json()["totalCount"] in (None, "17")
    assert all(c.status == 200 for c in sandbox.calls.calls("kintone"))


def test_short_read_fault_on_records_json_keeps_the_total_count(demo: str, sandbox: Sandbox) -> None:
    """``short_read`` on ``records.json``: one page lacks its last record; totalCount still counts it."""
    sandbox.faults.add(FaultRule("kintone", "short_read", operation="records.json", count=1))
    params = {"app": 2, "query": "order by $id asc limit 5", "totalCount": "true", "fields[0]": "$id"}
    short = get(demo, "records.json", params).json()
    assert [r["$id"]["value"] for r in short["records"]] == ["1", "2", "3", "4"]
    assert short["totalCount"] == "17"
    whole = get(demo, "records.json", params).json()  # the rule fired once
    assert [r["$id"]["value"] for r in whole["records"]] == ["1", "2", "3", "4", "5"]
    assert all(c.status == 200 for c in sandbox.calls.calls("kintone"))


def test_queries_of_an_incremental_reader(demo: str, sandbox: Sandbox) -> None:
    """What ``idc_sync.kintone_incremental`` asks: the newest record by update time with the total, update
    time ``>=`` a minute (stamps are whole minutes, so a record saved later in that minute matches), keyset
    paging on ``$id`` with only ``$id``/``$revision``, and ``$id in (...)``."""
    sandbox.clock = ManualClock(start=1_800_000_000.0)  # 2027-01-15T08:00:00Z
    minute = sandbox.now().strftime("%Y-%m-%dT%H:%M:00Z")
    sandbox.clock.advance(42)
    kintone.update_record(sandbox, 2, 5, {"reason": "edited"}, user_code="alice@example.com")
    kintone.update_record(sandbox, 2, 3, {"reason": "edited"}, user_code="alice@example.com")
    r = get(
        demo,
        "records.json",
        {"app": 2, "query": "order by Updated_datetime desc, $id desc limit 1", "totalCount": "true"},
    )
    body = r.json()
    assert (body["totalCount"], body["records"][0]["$id"]["value"]) == ("17", "5")
    assert body["records"][0]["Updated_datetime"]["value"] == minute  # 08:00:42 is stamped 08:00
    assert len(body["records"][0]) == len(sandbox.world.kintone.apps[2].fields) + 2  # every field
    since = f'Updated_datetime >= "{minute}"'
    r = get(demo, "records.json", {"app": 2, "query": f"{since} order by $id asc limit 500"})
    assert [x["$id"]["value"] for x in r.json()["records"]] == ["3", "5"]
    r = get(demo, "records.json", {"app": 2, "query": f"{since} and $id > 3 order by $id asc limit 500"})
    assert [x["$id"]["value"] for x in r.json()["records"]] == ["5"]
    params = {
        "app": 2,
        "query": "$id > 10 and $id <= 15 order by $id asc limit 2",
        "totalCount": "true",
        "fields[0]": "$id",
        "fields[1]": "$revision",
    }
    body = get(demo, "records.json", params).json()
    assert body["totalCount"] == "5"
    assert body["records"] == [
        {"$id": {"type": "__ID__", "value": "11"}, "$revision": {"type": "__REVISION__", "value": "1"}},
        {"$id": {"type": "__ID__", "value": "12"}, "$revision": {"type": "__REVISION__", "value": "1"}},
    ]
    r = get(demo, "records.json", {"app": 2, "query": "$id in (3, 5, 99) order by $id asc limit 100"})
    assert [(x["$id"]["value"], x["$revision"]["value"]) for x in r.json()["records"]] == [
        ("3", "2"),
        ("5", "2"),
    ]


def test_concurrency_limit(demo: str, sandbox: Sandbox) -> None:
    """Requests in flight are counted per sandbox; the one over the limit is refused. The two requests
    already running are set up as state (not by hoping real threads overlap), so the count is exact."""
    sandbox.world.kintone.max_concurrent_requests = 2
    runtime = kintone._runtime(sandbox)
    baseline = runtime.running
    runtime.running = baseline + 2  # two requests in flight
    try:
        refused = get(demo, "records.json", {"app": 1})
    finally:
        runtime.running -= 2
    assert (refused.status_code, refused.json()["code"]) == (429, "GAIA_TO04")
    assert refused.headers["X-ConcurrencyLimit-Limit"] == "2"
    assert refused.headers["X-ConcurrencyLimit-Running"] == str(baseline + 3)
    ok = get(demo, "records.json", {"app": 1})
    assert ok.status_code == 200 and ok.headers["X-ConcurrencyLimit-Running"] == str(baseline + 1)
    assert runtime.running == baseline  # every answered request, refused or not, left the count


# --------------------------------------------------------------------------- app management
def test_create_apps_from_nothing(sandbox: Sandbox, sandbox_url: str) -> None:
    from idc_sync.kintone_apps import load_app_definition

    sandbox.world.kintone.logins["admin"] = "pw"
    auth = basic("admin", "pw")
    r = send("POST", sandbox_url, "preview/app.json", {"name": "IdC permission sets"}, auth)
    assert r.status_code == 200 and r.json() == {"app": "1", "revision": "2"}
    ps_def = load_app_definition("permission_sets")
    r = send(
        "POST",
        sandbox_url,
        "preview/app/form/fields.json",
        {"app": 1, "properties": ps_def["properties"], "revision": 2},
        auth,
    )
    assert r.json() == {"revision": "3"}
    app2 = send("POST", sandbox_url, "preview/app.json", {"name": "IdC assignments"}, auth).json()["app"]
    asg_def = load_app_definition("assignments", permission_sets_app_id="1")
    r = send(
        "POST",
        sandbox_url,
        "preview/app/form/fields.json",
        {"app": app2, "properties": asg_def["properties"]},
        auth,
    )
    assert r.status_code == 200, r.text
    # duplicate field code
    r = send(
        "POST",
        sandbox_url,
        "preview/app/form/fields.json",
        {"app": app2, "properties": {"reason": asg_def["properties"]["reason"]}},
        auth,
    )
    assert (r.status_code, r.json()["code"]) == (400, "CB_VA01")
    r = send("POST", sandbox_url, "preview/app/deploy.json", {"apps": [{"app": 1}, {"app": app2}]}, auth)
    assert r.status_code == 200
    r = get(sandbox_url, "preview/app/deploy.json", {"apps[0]": 1, "apps[1]": app2}, auth)
    assert r.json() == {"apps": [{"app": "1", "status": "SUCCESS"}, {"app": "2", "status": "SUCCESS"}]}
    props = get(sandbox_url, "app/form/fields.json", {"app": 2}, auth).json()
    assert props["properties"]["permission_set"]["lookup"]["relatedApp"]["app"] == "1"
    assert props["properties"]["Created_by"]["type"] == "CREATOR"
    # app creation needs a user: an API token cannot do it
    token = kintone.add_api_token(sandbox, 1)
    r = send("POST", sandbox_url, "preview/app.json", {"name": "x"}, tok(token))
    assert (r.status_code, r.json()["code"]) == (403, "GAIA_NO01")
    assert get(sandbox_url, "apps.json", {"name": "assignments"}, auth).json()["apps"][0]["appId"] == "2"


def test_in_process_helpers(demo: str, sandbox: Sandbox) -> None:
    rid = kintone.add_record(
        sandbox,
        2,
        {
            "principal_type": "GROUP",
            "group_name": "auditors",
            "targets": "333333333333",
            "permission_set": "ReadOnly",
        },
        user_code="erin@example.com",
    )
    rec = get(demo, "record.json", {"app": 2, "id": rid}).json()["record"]
    assert rec["Created_by"]["value"]["code"] == rec["Updated_by"]["value"]["code"] == "erin@example.com"
    assert kintone.update_record(sandbox, 2, rid, {"reason": "because"}, user_code="bob@example.com") == "2"
    with pytest.raises(kintone.KintoneError) as err:
        kintone.add_record(
            sandbox, 2, {"targets": "1", "permission_set": "Nope"}, user_code="bob@example.com"
        )
    assert err.value.code == "GAIA_LO04"
    kintone.add_comment(sandbox, 2, rid, "thanks", user_code="erin@example.com")
    assert kintone.comments_of(sandbox, 2, rid)[0]["creator"]["code"] == "erin@example.com"
    kintone.delete_record(sandbox, 2, rid)
    assert get(demo, "record.json", {"app": 2, "id": rid}).status_code == 404


# --------------------------------------------------------------------------- fidelity: paths, bulkRequest, comments
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/k/v1/nope.json"), ("POST", "/k/v1/record/status.json"), ("GET", "/k/guest/3/v1/x.json")],
)
def test_unknown_api_paths_answer_cb_nf01(demo: str, method: str, path: str) -> None:
    r = requests.request(
        method, f"{demo}{path}", headers={**tok(PS_TOKEN), "Accept-Language": "en"}, timeout=10
    )
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert (r.json()["code"], r.json()["message"]) == ("CB_NF01", "The specified API is not found.")


def test_bulk_request_runs_all_or_nothing(demo: str, sandbox: Sandbox) -> None:
    def req(method: str, api: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"method": method, "api": api, "payload": payload}

    r = send(
        "POST",
        demo,
        "bulkRequest.json",
        {
            "requests": [
                req("PUT", "/k/v1/record.json", {"app": 2, "id": 8, "record": {"reason": {"value": "bulk"}}}),
                req("POST", "/k/v1/record.json", {"app": 1, "record": {"name": {"value": "BulkSet"}}}),
                req("DELETE", "/k/v1/records.json", {"app": 2, "ids": [7]}),
            ]
        },
    )
    assert r.status_code == 200, r.text
    new_id = r.json()["results"][1]["id"]
    assert r.json() == {"results": [{"revision": "2"}, {"id": new_id, "revision": "1"}, {}]}
    assert kintone.get_record_json(sandbox, 2, 8)["reason"]["value"] == "bulk"
    assert 7 not in sandbox.world.kintone.apps[2].records
    # the second request conflicts: nothing of the first is kept; the error sits at its index
    before = kintone.get_record_json(sandbox, 2, 9)
    r = send(
        "POST",
        demo,
        "bulkRequest.json",
        {
            "requests": [
                req("PUT", "/k/v1/record.json", {"app": 2, "id": 9, "record": {"reason": {"value": "lost"}}}),
                req("PUT", "/k/v1/record.json", {"app": 2, "id": 8, "revision": 1, "record": {}}),
                req("POST", "/k/v1/record.json", {"app": 1, "record": {"name": {"value": "Lost"}}}),
            ]
        },
    )
    assert r.status_code == 409
    results = r.json()["results"]
    assert (results[0], results[1]["code"], results[2]) == ({}, "GAIA_CO02", {})
    assert kintone.get_record_json(sandbox, 2, 9) == before
    assert [rec["name"]["value"] for rec in sandbox.world.kintone.apps[1].records.values()].count("Lost") == 0
    # what the sandbox cannot run, and more than 20 requests, are refused as invalid input
    r = send("POST", demo, "bulkRequest.json", {"requests": [req("POST", "/k/v1/record/comment.json", {})]})
    assert (r.status_code, r.json()["code"], list(r.json()["errors"])) == (
        400,
        "CB_VA01",
        ["requests[0].api"],
    )
    r = send("POST", demo, "bulkRequest.json", {"requests": [req("PUT", "/k/v1/record.json", {})] * 21})
    assert (r.status_code, list(r.json()["errors"])) == (400, ["requests"])


def test_comments_limit_zero_to_ten_and_mention_prefix(demo: str, sandbox: Sandbox) -> None:
    mentions = [
        {"code": "alice@example.com", "type": "USER"},
        {"code": "platform-admins", "type": "GROUP"},
        {"code": "sales", "type": "ORGANIZATION"},
    ]
    body = {"app": 2, "record": 8, "comment": {"text": "line 1\nline 2", "mentions": mentions}}
    assert send("POST", demo, "record/comment.json", body).status_code == 200
    r = get(demo, "record/comments.json", {"app": 2, "record": 8, "limit": 0})
    assert r.status_code == 200 and r.json() == {"comments": [], "older": True, "newer": False}
    (c,) = get(demo, "record/comments.json", {"app": 2, "record": 8}).json()["comments"]
    assert c["text"] == "Alice Anderson platform-admins sales \nline 1\nline 2"
    for bad in (-1, 11, "x"):
        r = get(demo, "record/comments.json", {"app": 2, "record": 8, "limit": bad})
        assert (r.status_code, r.json()["code"], list(r.json()["errors"])) == (400, "CB_VA01", ["limit"])
