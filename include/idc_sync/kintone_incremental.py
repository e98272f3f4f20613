"""Incremental reads of a kintone app: only what changed since the last run, never a partial view.

Why: a full read costs one request per 500 records (a cursor: 101 requests for 50,000 assignment records).
Every 10 minutes that is 14,500 requests per app per day; kintone's budget is 10,000 and this pipeline's
target 2,500. Records rarely change, so a run reads what changed and proves the rest is still there.

One run (``read_records``) with a usable :class:`RecordCache`:

1. **probe** (1 request): the most recently updated record (all fields) with the app's ``totalCount``.
   Its update time is the next run's watermark: taken *before* the other reads, so a record saved while
   this run reads is stamped at or after it. Its fields must match the cached form (else: a full read).
2. **changed** (1 request per 500): records whose update time (the app's ``UPDATED_TIME`` field,
   ``更新日時`` in a Japanese app) is ``>=`` the last watermark minus :data:`DEFAULT_OVERLAP`, paged by
   ``$id``. kintone stamps to the minute, and a stamp may precede the save's commit: ``>=`` keeps
   records saved later in the watermark's own minute, the overlap keeps saves stamped up to a few
   minutes earlier that committed after the probe. The watermark never passes this machine's clock (a
   migration may stamp a record in the future).
3. **count**: the probe's ``totalCount`` must equal the cached records plus the changed ones. If not
   (a deletion, or a record the time query cannot see: the API lets a migration set an old update time
   on a new record), an **id search** compares counts of ``$id`` ranges (bisection, one request per level)
   and lists only the ranges that differ: 7 more requests for one deletion among 50,000 records, where
   listing every id would cost 100.
4. **id pass** every ``id_pass_every``: every ``$id`` with its ``$revision`` (100 requests at 50,000),
   compared with the cache. It finds what counts cannot: an unseen addition and a deletion in the same
   run (the count is unchanged; until the pass the view lacks the one and still has the other) and an
   edit the time query missed (its revision differs). Records it finds missing or changed are read by id.

Anything that does not add up (a listing shorter than its ``totalCount``, counts that contradict each
other, a changed form, many unknown records) discards the incremental result and does a full read
through the cursor, which refuses a short read itself (``INCOMPLETE_READ``). A partial view is never
returned: the pipeline would plan the missing records' assignments as deletions.

Budget at 50,000 records, a run every 10 minutes, ``id_pass_every`` 2 hours: 132 runs x 2 + 12 x 102 =
1,488 requests per app per day (hourly id passes would be 2,688). Each deletion adds about 7.
"""

from __future__ import annotations

import bisect
import dataclasses as dc
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from idc_sync.kintone_client import MAX_PAGE_SIZE, KintoneClient, KintoneError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
#: How far before the last watermark the changed-records query starts (see the module docstring). kintone
#: saves are sub-second; 5 minutes also covers clock differences between kintone's servers.
DEFAULT_OVERLAP = dt.timedelta(minutes=5)
#: Full id listings this often (see the module docstring for the request budget).
DEFAULT_ID_PASS_EVERY = dt.timedelta(hours=2)
#: Records missing from the cache that are read by id rather than by a full read (100 ids per request).
MAX_FETCH_BY_ID = 1_000
_FETCH_CHUNK = 100
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: kintone's answers to a query naming a field the form no longer has (or no longer allows there).
_FORM_ERRORS = frozenset({"GAIA_IQ11", "CB_VA01"})

Mode = Literal["full", "incremental", "incremental+id_search", "incremental+id_pass"]


class AppRecords(BaseModel):
    """One app's records as last read, stored compactly: field types once per app, values per record.

    ``records`` maps the record id to ``{field code: value}`` (a subtable's rows as ``{"id", "value":
    {code: value}}``); :meth:`wire_records` rebuilds kintone's ``{code: {"type", "value"}}`` exactly. This
    halves the JSON (the types repeat in every record and every subtable cell on the wire).
    """

    base_url: str  # the kintone domain: a cache of another domain's app with the same id is unusable
    app_id: str
    update_field: str | None  # code of the UPDATED_TIME field; None: the app was empty (read in full)
    watermark: str | None  # newest update time seen by the last probe ("2024-05-01T09:00:00Z")
    id_pass_at: dt.datetime  # last full id listing (a full read counts)
    read_at: dt.datetime
    types: dict[str, str] = Field(default_factory=dict)  # top-level field code -> type
    subtable_types: dict[str, dict[str, str]] = Field(default_factory=dict)  # table -> inner code -> type
    records: dict[str, dict[str, Any]] = Field(default_factory=dict)  # record id -> {code: value}

    def wire_records(self) -> list[dict[str, Any]]:
        """The records as ``get_all_records`` returns them: wire shape, ``$id`` descending."""
        ids = sorted(self.records, key=int, reverse=True)
        return [_decode(self.records[i], self.types, self.subtable_types) for i in ids]


class RecordCache(BaseModel):
    """Per app, what the last successful read saw. JSON-serialisable (``model_dump(mode="json")``)."""

    version: int = CACHE_VERSION
    apps: dict[str, AppRecords] = Field(default_factory=dict)  # by app id


@dc.dataclass(frozen=True)
class ReadStats:
    app_id: str
    mode: Mode
    requests: int  # HTTP requests sent to kintone (retries included), all steps and fallbacks
    records: int  # records returned
    changed: int = 0  # records the update-time query returned that were new or had a new revision
    deleted: int = 0  # cached records found gone (by the id search or pass)
    fetched: int = 0  # records read by id (invisible to the update-time query)
    reason: str = ""  # why a full read, or why ids were checked


class _Unusable(Exception):
    """The incremental result cannot be trusted; a full read replaces it (the message says why)."""


def read_records(
    client: KintoneClient,
    app_id: str | int,
    cache: RecordCache | None,
    *,
    now: dt.datetime,
    id_pass_every: dt.timedelta = DEFAULT_ID_PASS_EVERY,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    full: bool = False,
) -> tuple[list[dict[str, Any]], RecordCache, ReadStats]:
    """All records of the app (as ``client.get_all_records(app_id)`` would return them), the cache to
    save for the next run, and what it cost.

    ``cache`` is not modified. Save the returned cache only once the run has used the records
    successfully; a run that fails should leave the previous cache (reading again from it is safe).
    Raises ``KintoneError`` when kintone fails or a full read comes back short.
    """
    app = str(app_id)
    now = now.astimezone(dt.UTC)
    started = client.request_count
    usable = cache is not None and cache.version == CACHE_VERSION
    entry = cache.apps.get(app) if cache is not None and usable else None
    reason = "full read requested" if full else _why_unusable(entry, client, cache)
    result: tuple[list[dict[str, Any]], AppRecords, dict[str, Any]] | None = None
    if reason is None and entry is not None:
        try:
            result = _incremental(client, entry, now, id_pass_every, overlap)
        except _Unusable as exc:
            reason = str(exc)
        except KintoneError as exc:
            if exc.code not in _FORM_ERRORS:
                raise
            reason = f"the query was refused ({exc.code}: {exc.message}); the form may have changed"
        if reason is not None:
            log.warning("kintone app %s: %s; reading the app in full", app, reason)
    if result is None:
        records, new_entry = _full_read(client, app, now, entry.update_field if entry else None)
        info: dict[str, Any] = {"mode": "full", "reason": reason or ""}
    else:
        records, new_entry, info = result
    apps = dict(cache.apps) if cache is not None and usable else {}
    apps[app] = new_entry
    stats = ReadStats(app_id=app, requests=client.request_count - started, records=len(records), **info)
    log.info(
        "kintone app %s: %d records, %s read in %d requests (%d changed, %d deleted, %d fetched by id)%s",
        app,
        stats.records,
        stats.mode,
        stats.requests,
        stats.changed,
        stats.deleted,
        stats.fetched,
        f": {stats.reason}" if stats.reason else "",
    )
    return records, RecordCache(apps=apps), stats


def _why_unusable(entry: AppRecords | None, client: KintoneClient, cache: RecordCache | None) -> str | None:
    if cache is None:
        return "no cache"
    if cache.version != CACHE_VERSION:
        return f"cache version {cache.version} (expected {CACHE_VERSION})"
    if entry is None:
        return "the app is not in the cache"
    if entry.base_url != client.base_url:
        return "the cache is of another kintone domain"
    if not entry.update_field or not entry.watermark:
        return "no watermark (the app was empty, or its records could not be cached)"
    return None


# --------------------------------------------------------------------------- full read
def _full_read(
    client: KintoneClient, app: str, now: dt.datetime, update_field: str | None
) -> tuple[list[dict[str, Any]], AppRecords]:
    """The cursor read (its own short-read check raises ``INCOMPLETE_READ``), preceded by the probe that
    dates it. Records that cannot be cached are still returned; the next run then reads in full again."""
    top = _dating_probe(client, app, update_field)
    if top is not None:
        update_field = _field_of_type(top, "UPDATED_TIME")
    records = client.get_all_records(app)
    entry = AppRecords(
        base_url=client.base_url,
        app_id=app,
        update_field=None,
        watermark=None,
        id_pass_at=now,
        read_at=now,
    )
    if not records or top is None or update_field is None:
        return records, entry
    try:
        types: dict[str, str] = {}
        for record in records:
            for code, field in record.items():
                if types.setdefault(code, str(field.get("type"))) != field.get("type"):
                    raise _Unusable(f"field {code} has two types in one read")
        if types.get(update_field) != "UPDATED_TIME":
            raise _Unusable("the form changed between the probe and the read")
        subtable_types: dict[str, dict[str, str]] = {}
        encoded = {_record_id(r): _encode(r, types, subtable_types, exact=False) for r in records}
    except _Unusable as exc:
        log.warning("kintone app %s: not cached (%s); the next run reads it in full again", app, exc)
        return records, entry
    entry = entry.model_copy(
        update={
            "update_field": update_field,
            "watermark": _watermark(top, update_field, now, None),
            "types": types,
            "subtable_types": subtable_types,
            "records": encoded,
        }
    )
    return records, entry


def _dating_probe(client: KintoneClient, app: str, update_field: str | None) -> dict[str, Any] | None:
    """The most recently updated record before a full read (None: an empty app, or none to be had).

    Without a known update-time field (first read, or it was renamed) a probe by ``$id`` learns its code
    from the record's types, then the probe is repeated ordered by it.
    """
    for _ in range(3):  # by the known field (refused if renamed), by $id, by the learned field
        try:
            _, top = _probe(client, app, update_field)
        except KintoneError as exc:
            if exc.code not in _FORM_ERRORS or update_field is None:
                raise
            update_field = None
            continue
        except _Unusable:
            return None
        if top is None:
            return None
        learned = _field_of_type(top, "UPDATED_TIME")
        if learned is None:
            return None
        if learned == update_field:
            return top
        update_field = learned
    return None


# --------------------------------------------------------------------------- incremental read
def _incremental(
    client: KintoneClient,
    entry: AppRecords,
    now: dt.datetime,
    id_pass_every: dt.timedelta,
    overlap: dt.timedelta,
) -> tuple[list[dict[str, Any]], AppRecords, dict[str, Any]]:
    app, field = entry.app_id, str(entry.update_field)
    types = dict(entry.types)
    subtable_types = {k: dict(v) for k, v in entry.subtable_types.items()}
    total, top = _probe(client, app, field)
    if top is not None:
        _check_form(top, types)
    watermark = max(str(entry.watermark), _watermark(top, field, now, entry.watermark))

    # changed records since the previous probe (minus the overlap)
    since = _parse_time(str(entry.watermark)) - overlap
    records = dict(entry.records)
    changed = 0
    for record in _changed(client, app, field, since):
        rid = _record_id(record)
        encoded = _encode(record, types, subtable_types, exact=True)
        old = records.get(rid)
        if old is None or old.get("$revision") != encoded.get("$revision"):
            changed += 1
        records[rid] = encoded

    id_pass_due = not (entry.id_pass_at <= now < entry.id_pass_at + id_pass_every)
    mode: Mode = "incremental"
    reason = ""
    deleted = fetched = 0
    id_pass_at = entry.id_pass_at
    if id_pass_due or len(records) != total:
        reconcile = _Reconcile(client, app, records)
        if id_pass_due:
            mode, reason = "incremental+id_pass", f"id pass due (every {id_pass_every})"
            total = reconcile.all_ids()
            id_pass_at = now
        else:
            mode = "incremental+id_search"
            reason = f"kintone counts {total} records, the cache and the changes {len(records)}"
            reconcile.search(0, None, total)
        deleted, fetched = reconcile.apply(types, subtable_types)
    if len(records) != total:
        raise _Unusable(f"kintone counts {total} records but the incremental read ends with {len(records)}")

    new_entry = entry.model_copy(
        update={
            "watermark": watermark,
            "id_pass_at": id_pass_at,
            "read_at": now,
            "types": types,
            "subtable_types": subtable_types,
            "records": records,
        }
    )
    info = {"mode": mode, "reason": reason, "changed": changed, "deleted": deleted, "fetched": fetched}
    return new_entry.wire_records(), new_entry, info


def _probe(client: KintoneClient, app: str, update_field: str | None) -> tuple[int, dict[str, Any] | None]:
    """``(totalCount, the most recently updated record)``; by ``$id`` while the field is unknown."""
    order = f"{update_field} desc, $id desc" if update_field else "$id desc"
    page = client.get_records(app, query=f"order by {order} limit 1", total_count=True)
    records = page.get("records") or []
    total = _count(page)
    if total and not records:
        raise _Unusable(f"kintone counts {total} records but returned none")
    return total, (records[0] if records else None)


def _changed(client: KintoneClient, app: str, field: str, since: dt.datetime) -> Iterable[dict[str, Any]]:
    """Records updated at or after ``since``, paged by ``$id`` (no offset: kintone caps it at 10,000)."""
    condition = f'{field} >= "{_fmt_time(since)}"'
    last: str | None = None
    while True:
        where = condition if last is None else f"{condition} and $id > {last}"
        page = client.get_records(app, query=f"{where} order by $id asc limit {MAX_PAGE_SIZE}")
        records = page.get("records") or []
        yield from records
        if len(records) < MAX_PAGE_SIZE:
            return
        last = _record_id(records[-1])


class _Reconcile:
    """Finds the cached records kintone no longer has and the records it has that the cache lacks (or
    holds at an older revision), by listing ``$id``/``$revision``; :meth:`apply` updates ``records``."""

    def __init__(self, client: KintoneClient, app: str, records: dict[str, dict[str, Any]]) -> None:
        self.client, self.app, self.records = client, app, records
        self.ids = sorted(int(i) for i in records)
        self.gone: set[str] = set()
        self.to_fetch: set[str] = set()

    def _page(
        self, lo: int, hi: int | None, *, after: int | None = None, count: bool = True
    ) -> tuple[list[tuple[str, str]], int]:
        """One page of ``($id, $revision)`` in ``(lo, hi]`` (after ``after``), with the range's total
        count when ``count`` (-1 otherwise)."""
        parts = [f"$id > {max(lo, after or 0)}"] + ([f"$id <= {hi}"] if hi is not None else [])
        query = f"{' and '.join(parts)} order by $id asc limit {MAX_PAGE_SIZE}"
        page = self.client.get_records(self.app, fields=["$id", "$revision"], query=query, total_count=count)
        rows = [(_record_id(r), str(r.get("$revision", {}).get("value"))) for r in page.get("records") or []]
        return rows, (_count(page) if count else -1)

    def _compare(self, lo: int, hi: int | None, rows: Sequence[tuple[str, str]]) -> None:
        listed = dict(rows)
        for cached_id in self._cached(lo, hi):
            if str(cached_id) not in listed:
                self.gone.add(str(cached_id))
        for rid, revision in rows:
            cached = self.records.get(rid)
            if cached is None or str(cached.get("$revision")) != revision:
                self.to_fetch.add(rid)

    def _cached(self, lo: int, hi: int | None) -> list[int]:
        start = bisect.bisect_right(self.ids, lo)
        end = len(self.ids) if hi is None else bisect.bisect_right(self.ids, hi)
        return self.ids[start:end]

    def all_ids(self) -> int:
        """Lists every id (the id pass); returns kintone's total."""
        rows, total = self._page(0, None)
        page = rows
        while len(page) == MAX_PAGE_SIZE:
            page, _ = self._page(0, None, after=int(rows[-1][0]), count=False)
            rows += page
        if len(rows) != total:
            raise _Unusable(f"listing ids returned {len(rows)} of the {total} records kintone counts")
        self._compare(0, None, rows)
        return total

    def search(self, lo: int, hi: int | None, server: int) -> None:
        """Bisection over ``(lo, hi]``, which kintone says holds ``server`` records: a range whose count
        equals the cache's is taken as unchanged (the id pass checks those); ranges small enough to list
        in one request are listed and compared."""
        cached = self._cached(lo, hi)
        if server == len(cached):
            return
        if server - len(cached) > MAX_FETCH_BY_ID:
            raise _Unusable(f"kintone has {server - len(cached)} more records than the cache")
        if server <= MAX_PAGE_SIZE:
            rows, count = self._page(lo, hi)
            if count != server or len(rows) != count:
                raise _Unusable(
                    f"ids ({lo}, {hi}]: expected {server} records, kintone counts {count} and listed {len(rows)}"
                )
            self._compare(lo, hi, rows)
            return
        if len(cached) < 2:
            raise _Unusable(f"kintone has {server} records in ids ({lo}, {hi}], the cache {len(cached)}")
        mid = cached[len(cached) // 2 - 1]
        rows, left = self._page(lo, mid)
        if left <= MAX_PAGE_SIZE:
            if len(rows) != left:
                raise _Unusable(f"ids ({lo}, {mid}]: kintone counts {left} records but listed {len(rows)}")
            self._compare(lo, mid, rows)
        else:
            self.search(lo, mid, left)
        if server - left < 0:
            raise _Unusable(f"ids ({lo}, {hi}] hold {server} records but ({lo}, {mid}] alone {left}")
        self.search(mid, hi, server - left)

    def apply(self, types: dict[str, str], subtable_types: dict[str, dict[str, str]]) -> tuple[int, int]:
        """Drops the gone records, reads the missing/changed ones by id; returns (deleted, fetched)."""
        if len(self.to_fetch) > MAX_FETCH_BY_ID:
            raise _Unusable(f"{len(self.to_fetch)} records are missing from the cache")
        for rid in self.gone:
            del self.records[rid]
        wanted = sorted(self.to_fetch, key=int)
        for i in range(0, len(wanted), _FETCH_CHUNK):
            chunk = wanted[i : i + _FETCH_CHUNK]
            query = f"$id in ({', '.join(chunk)}) order by $id asc limit {_FETCH_CHUNK}"
            got = self.client.get_records(self.app, query=query).get("records") or []
            if sorted((_record_id(r) for r in got), key=int) != chunk:
                raise _Unusable("records listed a moment ago could not be read by id")
            for record in got:
                self.records[_record_id(record)] = _encode(record, types, subtable_types, exact=True)
        return len(self.gone), len(wanted)


# --------------------------------------------------------------------------- helpers
def _count(page: dict[str, Any]) -> int:
    raw = page.get("totalCount")
    if raw in (None, ""):
        raise _Unusable("kintone answered without a totalCount")
    return int(raw)


def _record_id(record: dict[str, Any]) -> str:
    value = (record.get("$id") or {}).get("value")
    if value in (None, "") or not str(value).isdigit():
        raise _Unusable(f"a record without a numeric $id ({value!r})")
    return str(value)


def _field_of_type(record: dict[str, Any], ftype: str) -> str | None:
    return next((code for code, field in record.items() if field.get("type") == ftype), None)


def _check_form(record: dict[str, Any], types: dict[str, str]) -> None:
    """A record's fields must be the cached form's (kintone returns every field of the form for every
    record): an added, removed, renamed or retyped field changes records without touching their update
    time, so the cached records would be stale."""
    fresh = {code: str(field.get("type")) for code, field in record.items()}
    if fresh != types:
        added = sorted(set(fresh) - set(types))
        removed = sorted(set(types) - set(fresh))
        retyped = sorted(c for c in set(fresh) & set(types) if fresh[c] != types[c])
        raise _Unusable(f"the app's form changed (added {added}, removed {removed}, retyped {retyped})")


def _watermark(record: dict[str, Any] | None, field: str | None, now: dt.datetime, old: str | None) -> str:
    """The probe's newest update time, but never later than this machine's clock: a record the API
    stamped in the future (migrations may set any time) must not move the watermark past real edits."""
    value = (record or {}).get(field or "", {}).get("value") if record is not None else None
    if not value:
        return old or _fmt_time(now)
    stamp = _parse_time(str(value))
    limit = now.replace(second=0, microsecond=0)
    if stamp > limit + DEFAULT_OVERLAP:
        log.warning("a kintone record is stamped %s, in the future; the watermark follows the clock", value)
    return _fmt_time(min(stamp, limit))


def _encode(
    record: dict[str, Any],
    types: dict[str, str],
    subtable_types: dict[str, dict[str, str]],
    *,
    exact: bool,
) -> dict[str, Any]:
    """Wire record -> ``{code: value}``; ``exact``: its fields must be the cached form's."""
    if exact:
        _check_form(record, types)
    out: dict[str, Any] = {}
    for code, field in record.items():
        if set(field) != {"type", "value"}:
            raise _Unusable(f"field {code} is not {{type, value}}: cannot cache it faithfully")
        value = field["value"]
        if field["type"] == "SUBTABLE":
            value = [_encode_row(code, row, subtable_types) for row in value or []]
        out[code] = value
    return out


def _encode_row(table: str, row: dict[str, Any], subtable_types: dict[str, dict[str, str]]) -> dict[str, Any]:
    if set(row) != {"id", "value"}:
        raise _Unusable(f"a row of {table} is not {{id, value}}: cannot cache it faithfully")
    cells: dict[str, Any] = row["value"]
    fresh = {code: str(cell.get("type")) for code, cell in cells.items()}
    known = subtable_types.setdefault(table, fresh)
    if known != fresh:
        raise _Unusable(f"the fields of table {table} changed ({sorted(known)} -> {sorted(fresh)})")
    for code, cell in cells.items():
        if set(cell) != {"type", "value"}:
            raise _Unusable(f"field {table}.{code} is not {{type, value}}: cannot cache it faithfully")
    return {"id": row["id"], "value": {code: cell["value"] for code, cell in cells.items()}}


def _decode(
    record: dict[str, Any], types: dict[str, str], subtable_types: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """``{code: value}`` -> wire record (fresh objects: callers may not change the cache through it)."""
    out: dict[str, Any] = {}
    for code, value in record.items():
        ftype = types[code]
        if ftype == "SUBTABLE":
            inner = subtable_types.get(code, {})
            value = [
                {
                    "id": row["id"],
                    "value": {c: {"type": inner[c], "value": _copy(v)} for c, v in row["value"].items()},
                }
                for row in value
            ]
        else:
            value = _copy(value)
        out[code] = {"type": ftype, "value": value}
    return out


def _copy(value: Any) -> Any:
    """A copy of a JSON value (``copy.deepcopy`` is 5x slower: 50,000 records are decoded every run)."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _fmt_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
