"""A small, hand-written kintone REST client.

Why hand-written: there is no maintained Python kintone SDK that fits. Cybozu's official SDK is
JavaScript only (``@kintone/rest-api-client``); the Python packages on PyPI (``pyntone``,
``kintone_sdk4python``, ``skintone``...) are one-person projects that are unmaintained or minimal, and
none offers the three things this pipeline depends on: the cursor API with guaranteed cursor deletion
(kintone allows only 10 live cursors per *domain*, so a leaked cursor hurts everyone), bounded retries of
kintone's own transient errors (``GAIA_TO04``/``GAIA_TM12`` 429, ``GAIA_DA02`` 520, 5xx), and error
objects that never carry the API tokens. The REST surface we need is small, so owning it is cheaper
than adapting a library.

Covered:

* records: cursor-based full reads (:meth:`KintoneClient.iter_records`, :meth:`get_all_records`),
  one page (:meth:`get_records`), :meth:`get_record`, :meth:`add_record`, :meth:`update_record`;
* comments: :meth:`add_comment` (with @mentions), :meth:`get_comments`;
* form: :meth:`get_form_fields` (live or preview);
* app management for ``kintone_setup``: :meth:`create_preview_app`, :meth:`add_form_fields`,
  :meth:`deploy_apps`, :meth:`get_deploy_status`, :meth:`wait_for_deploy`, :meth:`get_space`.

Not covered: guest spaces (``/k/guest/<id>/v1``), files, bulk requests, process management.

Authentication: API tokens (``X-Cybozu-API-Token: tok1,tok2``, one per app; all configured tokens are
sent because writing a record with a LOOKUP field also needs the related app's token) or password
authentication (``X-Cybozu-Authorization``), which the app-management API needs. Secrets are kept out of
``repr``, logs and exception text.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, Literal

import requests
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

log = logging.getLogger(__name__)

#: kintone error codes that mean "try again later" (the request was not processed).
RETRYABLE_CODES = frozenset({"GAIA_TO04", "GAIA_TM12", "GAIA_DA02"})
#: HTTP statuses retried for any request: 429 too many requests, 520 kintone's DB lock, 502-504.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504, 520})
MAX_PAGE_SIZE = 500
MAX_COMMENT_MENTIONS = 10
MAX_COMMENT_LENGTH = 65_535


class KintoneError(Exception):
    """An error answered by kintone (``{code, id, message, errors}``) or a transport failure.

    ``status`` is the HTTP status (0 for a connection failure), ``code`` kintone's error code
    (``CB_AU01``, ``GAIA_RE01``...; ``HTTP_<status>`` when the body was not kintone JSON,
    ``CONNECTION_ERROR`` when no answer came). The text never contains credentials.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        id: str | None = None,
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.id = id
        self.errors: dict[str, Any] = dict(errors or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"kintone error {self.code} (HTTP {self.status}): {self.message}"
        if self.errors:
            details = []
            for field, detail in sorted(self.errors.items()):
                messages = detail.get("messages") if isinstance(detail, dict) else None
                details.append(f"{field}: {'; '.join(map(str, messages)) if messages else detail}")
            text += " [" + " | ".join(details) + "]"
        if self.id:
            text += f" (id {self.id})"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Airflow may pickle task exceptions)
        return (self.__class__, (self.status, self.code, self.message, self.id, self.errors))

    @property
    def retryable(self) -> bool:
        return (
            self.code in RETRYABLE_CODES
            or self.status in RETRYABLE_STATUSES
            or self.code in {"CONNECTION_ERROR", "TIMEOUT"}
        )

    @property
    def is_auth_error(self) -> bool:
        return self.status == 401 or self.code in {"CB_AU01", "CB_WA01", "GAIA_IA02", "GAIA_NO01"}


class _Transient(Exception):
    """Internal: a failure worth retrying; carries the final error to raise when retries run out."""

    def __init__(self, error: KintoneError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class RecordCursor:
    """Records of one cursor, iterable once, and a context manager that always finishes the cursor.

    ``with client.iter_records(app) as records: for r in records: ...`` deletes the kintone cursor on
    leaving the block even when the loop stopped early or raised; without ``with``, iterating to the end
    or calling :meth:`close` does the same (and so does garbage collection of the generator, as a last
    resort).
    """

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self._records = records

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._records

    def __next__(self) -> dict[str, Any]:
        return next(self._records)

    def close(self) -> None:
        close = getattr(self._records, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> RecordCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KintoneClient:
    """kintone REST client bound to one domain (``https://<subdomain>.cybozu.com`` or the sandbox)."""

    def __init__(
        self,
        base_url: str,
        api_tokens: Mapping[str, str] | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        session: requests.Session | None = None,
        language: str = "en",
        timeout: float = 30,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("username and password must be given together")
        self.base_url = base_url.rstrip("/")
        self._tokens = {
            str(app): tok.strip() for app, tok in (api_tokens or {}).items() if tok and tok.strip()
        }
        self._password_auth = (
            base64.b64encode(f"{username}:{password}".encode()).decode() if username is not None else None
        )
        self._secrets = [s for s in [*self._tokens.values(), password, self._password_auth] if s]
        self.session = session or requests.Session()
        self.language = language
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        #: HTTP requests sent, retries included (kintone's per-app daily limit counts every one of them);
        #: read it before and after a call to know what the call cost.
        self.request_count = 0

    def __repr__(self) -> str:
        auth = "password" if self._password_auth else f"api tokens for apps {sorted(self._tokens)}"
        return f"KintoneClient({self.base_url!r}, {auth})"

    # ------------------------------------------------------------------ transport
    def _headers(self, app_id: str | None, has_body: bool) -> dict[str, str]:
        headers = {"Accept-Language": self.language, "Accept": "application/json"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self._password_auth:
            headers["X-Cybozu-Authorization"] = self._password_auth
        elif self._tokens:
            # The app's own token first, then the others (needed for LOOKUP fields); kintone takes ≤9.
            first = [self._tokens[app_id]] if app_id is not None and app_id in self._tokens else []
            others = [t for a, t in sorted(self._tokens.items()) if a != app_id]
            headers["X-Cybozu-API-Token"] = ",".join(dict.fromkeys(first + others))
        return headers

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error_from_response(self, resp: requests.Response) -> KintoneError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            return KintoneError(
                resp.status_code,
                str(body.get("code")),
                self._scrub(str(body.get("message", ""))),
                body.get("id"),
                json.loads(self._scrub(json.dumps(body.get("errors") or {}))),
            )
        snippet = " ".join(resp.text.split())[:200] if resp.text else resp.reason or ""
        return KintoneError(resp.status_code, f"HTTP_{resp.status_code}", self._scrub(snippet))

    def _request_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        app_id: str | None,
        idempotent: bool,
    ) -> dict[str, Any]:
        url = f"{self.base_url}/k/v1/{path}"
        self.request_count += 1
        try:
            resp = self.session.request(
                method,
                url,
                params=params,
                data=json.dumps(body) if body is not None else None,
                headers=self._headers(app_id, body is not None),
                timeout=self.timeout,
            )
        except requests.ConnectionError as exc:
            # For non-idempotent POSTs only a failure to *connect* is safe to retry (the request never
            # reached kintone); a reset after sending may have been processed (a comment posted twice).
            error = KintoneError(0, "CONNECTION_ERROR", self._scrub(f"{method} {path}: {_describe(exc)}"))
            if idempotent or _never_sent(exc):
                raise _Transient(error) from None
            raise error from None
        except requests.Timeout as exc:
            error = KintoneError(
                0, "TIMEOUT", f"{method} {path}: no answer within {self.timeout}s ({type(exc).__name__})"
            )
            if idempotent:
                raise _Transient(error) from None
            raise error from None
        except requests.RequestException as exc:  # e.g. a broken chunked answer: no secrets in the text
            error = KintoneError(0, "CONNECTION_ERROR", self._scrub(f"{method} {path}: {type(exc).__name__}"))
            if idempotent:
                raise _Transient(error) from None
            raise error from None
        if resp.status_code >= 400:
            error = self._error_from_response(resp)
            # 429/520 and kintone's "busy" codes mean the request was not processed: safe for any method.
            if error.code in RETRYABLE_CODES or resp.status_code in (429, 520, 503):
                raise _Transient(error, _retry_after(resp))
            if idempotent and resp.status_code >= 500:
                raise _Transient(error, _retry_after(resp))
            raise error
        if not resp.content:
            return {}
        try:
            data = resp.json()
        except ValueError:
            raise KintoneError(resp.status_code, "INVALID_RESPONSE", "the answer was not JSON") from None
        return data if isinstance(data, dict) else {"value": data}

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, _Transient) else None
        # Full jitter exponential backoff; a server-sent Retry-After is a floor.
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        app_id: str | int | None = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """One kintone API call (``path`` relative to ``/k/v1/``) with bounded retries of transient errors."""
        app = str(app_id) if app_id is not None else None
        idem = method.upper() != "POST" if idempotent is None else idempotent

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.error if isinstance(exc, _Transient) else exc
            log.warning(
                "kintone %s %s failed (%s); retry %d/%d in %.1fs",
                method,
                path,
                reason,
                state.attempt_number,
                self.max_retries,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(
                self._request_once, method, path, params=params, body=body, app_id=app, idempotent=idem
            )
        except _Transient as exc:
            raise exc.error from None

    # ------------------------------------------------------------------ records
    def iter_records(
        self,
        app_id: str | int,
        fields: Sequence[str] | None = None,
        query: str = "",
        size: int = MAX_PAGE_SIZE,
    ) -> RecordCursor:
        """All records matching ``query`` (no ``limit``/``offset`` in it), through the cursor API.

        The cursor is created on the first ``next()`` and always finished: kintone deletes it itself
        after the last page; otherwise (consumer stopped early, an error, the cursor closed or left with
        ``with``) it is deleted then. A read that ends with another number of records than kintone's
        ``totalCount`` raises ``KintoneError`` ``INCOMPLETE_READ`` instead of yielding its last page.
        """
        return RecordCursor(self._cursor_records(str(app_id), fields, query, size))

    def _cursor_records(
        self, app: str, fields: Sequence[str] | None, query: str, size: int
    ) -> Generator[dict[str, Any], None, None]:
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"size must be 1..{MAX_PAGE_SIZE}, got {size}")
        body: dict[str, Any] = {"app": app, "size": size}
        if fields:
            body["fields"] = list(fields)
        if query:
            body["query"] = query
        # Creating a cursor is safe to retry: a duplicate would only expire after 10 minutes.
        created = self.request("POST", "records/cursor.json", body=body, app_id=app, idempotent=True)
        cursor_id = str(created["id"])
        total_raw = created.get("totalCount")
        total = int(total_raw) if total_raw not in (None, "") else None
        log.debug("opened cursor on app %s (%s records)", app, total if total is not None else "?")
        read = 0
        finished = False
        try:
            while True:
                page = self.request("GET", "records/cursor.json", params={"id": cursor_id}, app_id=app)
                records = _page_records(app, page)
                read += len(records)
                level = logging.INFO if (total or 0) > size else logging.DEBUG
                log.log(level, "read %d/%s records of app %s", read, total if total is not None else "?", app)
                if not page.get("next"):
                    finished = True  # kintone deletes the cursor after its last page
                    # Checked before the last page is handed out, so a consumer building desired state
                    # never sees a complete-looking read that misses records (they would be planned as
                    # deletions).
                    _check_complete(app, total, read)
                yield from records
                if finished:
                    return
        finally:
            if not finished:
                self._delete_cursor(cursor_id, app)

    def _delete_cursor(self, cursor_id: str, app: str) -> None:
        try:
            self.request("DELETE", "records/cursor.json", body={"id": cursor_id}, app_id=app)
            log.debug("deleted cursor of app %s", app)
        except KintoneError as exc:
            # Never mask the original error; an undeleted cursor expires after 10 minutes anyway.
            log.warning(
                "could not delete a kintone cursor of app %s (%s); it expires in 10 minutes", app, exc
            )

    def get_all_records(
        self, app_id: str | int, fields: Sequence[str] | None = None, query: str = ""
    ) -> list[dict[str, Any]]:
        with self.iter_records(app_id, fields=fields, query=query) as records:
            return list(records)

    def get_records(
        self,
        app_id: str | int,
        fields: Sequence[str] | None = None,
        query: str = "",
        total_count: bool = False,
    ) -> dict[str, Any]:
        """One page (``GET /k/v1/records.json``): ``{records, totalCount}``; ``query`` may use limit/offset.

        Not a full read: whole-app reads go through the cursor (:meth:`get_all_records`), which checks the
        count it got against kintone's ``totalCount``; a caller paging with this must do that itself.
        """
        params: dict[str, Any] = {"app": str(app_id)}
        if query:
            params["query"] = query
        for i, field in enumerate(fields or ()):
            params[f"fields[{i}]"] = field
        if total_count:
            params["totalCount"] = "true"
        return self.request("GET", "records.json", params=params, app_id=app_id)

    def get_record(self, app_id: str | int, record_id: str | int) -> dict[str, Any]:
        data = self.request(
            "GET", "record.json", params={"app": str(app_id), "id": str(record_id)}, app_id=app_id
        )
        record: dict[str, Any] = data.get("record", {})
        return record

    def add_record(self, app_id: str | int, record: Mapping[str, Any]) -> tuple[str, str]:
        """Adds a record (``{field: {"value": ...}}``); returns ``(record id, revision)``."""
        data = self.request(
            "POST", "record.json", body={"app": str(app_id), "record": dict(record)}, app_id=app_id
        )
        return str(data["id"]), str(data.get("revision", "1"))

    def update_record(
        self,
        app_id: str | int,
        record_id: str | int,
        record: Mapping[str, Any],
        revision: str | int | None = None,
    ) -> str:
        """Updates fields of a record; with ``revision`` kintone refuses a concurrent edit (GAIA_CO02).

        Returns the new revision. A PUT is retried after a 5xx; if the first attempt had been applied,
        the retry with the same ``revision`` answers GAIA_CO02 (re-read the record to tell).
        """
        body: dict[str, Any] = {"app": str(app_id), "id": str(record_id), "record": dict(record)}
        if revision is not None:
            body["revision"] = str(revision)
        data = self.request("PUT", "record.json", body=body, app_id=app_id)
        return str(data.get("revision", ""))

    # ------------------------------------------------------------------ comments
    def add_comment(
        self,
        app_id: str | int,
        record_id: str | int,
        text: str,
        mentions: Sequence[Mapping[str, str]] = (),
    ) -> str:
        """Posts a comment; ``mentions`` are ``{"code": ..., "type": "USER"|"GROUP"|"ORGANIZATION"}``
        (at most 10, kintone's limit; extra ones are dropped with a warning). Returns the comment id.

        Not retried on an ambiguous failure (read timeout, 500) so a comment is never posted twice.
        """
        clean: list[dict[str, str]] = []
        for m in mentions:
            code = str(m.get("code", "")).strip()
            if code and all(c["code"] != code for c in clean):
                clean.append({"code": code, "type": str(m.get("type", "USER"))})
        if len(clean) > MAX_COMMENT_MENTIONS:
            log.warning(
                "comment on record %s of app %s names %d people; kintone allows %d, the rest are dropped",
                record_id,
                app_id,
                len(clean),
                MAX_COMMENT_MENTIONS,
            )
            clean = clean[:MAX_COMMENT_MENTIONS]
        if len(text) > MAX_COMMENT_LENGTH:
            text = text[: MAX_COMMENT_LENGTH - 1] + "…"
        body = {"app": str(app_id), "record": str(record_id), "comment": {"text": text, "mentions": clean}}
        data = self.request("POST", "record/comment.json", body=body, app_id=app_id)
        return str(data["id"])

    def get_comments(
        self,
        app_id: str | int,
        record_id: str | int,
        order: Literal["asc", "desc"] = "desc",
        limit: int = 10,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Comments of a record (kintone returns at most 10 per call): ``[{id, text, creator, createdAt,
        mentions}]``."""
        params = {
            "app": str(app_id),
            "record": str(record_id),
            "order": order,
            "limit": str(max(1, min(limit, 10))),
            "offset": str(offset),
        }
        data = self.request("GET", "record/comments.json", params=params, app_id=app_id)
        comments: list[dict[str, Any]] = data.get("comments", [])
        return comments

    # ------------------------------------------------------------------ form and app management
    def get_form_fields(self, app_id: str | int, *, preview: bool = False) -> dict[str, Any]:
        """``{field code: property}`` of the app's form (``preview=True``: the not yet deployed settings)."""
        path = "preview/app/form/fields.json" if preview else "app/form/fields.json"
        data = self.request("GET", path, params={"app": str(app_id), "lang": "default"}, app_id=app_id)
        properties: dict[str, Any] = data.get("properties", {})
        return properties

    def create_preview_app(
        self, name: str, *, space: str | int | None = None, thread: str | int | None = None
    ) -> str:
        """Creates an app in the preview (test) environment; returns its id. Needs password auth."""
        body: dict[str, Any] = {"name": name}
        if space is not None:
            body["space"] = str(space)
            if thread is not None:
                body["thread"] = str(thread)
        data = self.request("POST", "preview/app.json", body=body)
        return str(data["app"])

    def get_space(self, space_id: str | int) -> dict[str, Any]:
        return self.request("GET", "space.json", params={"id": str(space_id)})

    def add_form_fields(
        self, app_id: str | int, properties: Mapping[str, Any], revision: str | int | None = None
    ) -> str:
        """Adds fields to the preview app; returns the new app settings revision."""
        body: dict[str, Any] = {"app": str(app_id), "properties": dict(properties)}
        if revision is not None:
            body["revision"] = str(revision)
        # Adding the same field twice fails (duplicate code), so a retried POST is harmless.
        data = self.request("POST", "preview/app/form/fields.json", body=body, app_id=app_id, idempotent=True)
        return str(data.get("revision", ""))

    def deploy_apps(self, app_ids: Sequence[str | int], *, revert: bool = False) -> None:
        """Applies the preview settings of the apps to production (asynchronous in kintone)."""
        body = {"apps": [{"app": str(a)} for a in app_ids], "revert": revert}
        self.request("POST", "preview/app/deploy.json", body=body, idempotent=True)

    def get_deploy_status(self, app_ids: Sequence[str | int]) -> dict[str, str]:
        """``{app id: PROCESSING | SUCCESS | FAIL | CANCEL}``."""
        params = {f"apps[{i}]": str(a) for i, a in enumerate(app_ids)}
        data = self.request("GET", "preview/app/deploy.json", params=params)
        return {str(item["app"]): str(item["status"]) for item in data.get("apps", [])}

    def wait_for_deploy(
        self, app_ids: Sequence[str | int], *, timeout: float = 120.0, interval: float = 1.0
    ) -> dict[str, str]:
        """Polls the deploy status until no app is PROCESSING; raises if one did not succeed."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_deploy_status(app_ids)
            if status and all(s != "PROCESSING" for s in status.values()):
                failed = {a: s for a, s in status.items() if s != "SUCCESS"}
                if failed:
                    raise KintoneError(0, "DEPLOY_FAILED", f"deploying apps ended with {failed}")
                return status
            if time.monotonic() >= deadline:
                raise KintoneError(
                    0, "DEPLOY_TIMEOUT", f"apps still deploying after {timeout:.0f}s: {status}"
                )
            self._sleep(interval)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> KintoneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _page_records(app: str, page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of a cursor page, or ``INVALID_RESPONSE``: records that are not a list of objects, or an
    empty page that says more follow (kintone never sends one; followed, it would page forever)."""
    records = page.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise KintoneError(
            0, "INVALID_RESPONSE", f"a cursor page of app {app} holds no list of records: the read stopped"
        )
    if not records and page.get("next"):
        raise KintoneError(
            0,
            "INVALID_RESPONSE",
            f"a cursor page of app {app} is empty but says more follow: the read stopped",
        )
    return records


def _check_complete(app: str, announced: int | None, read: int) -> None:
    """Raises ``INCOMPLETE_READ`` when a finished cursor returned another number of records than the
    ``totalCount`` kintone announced when it was created.

    A short read is otherwise indistinguishable from records having been deleted: the pipeline would
    plan to remove their assignments. Failing the read stops the run before any plan.
    """
    if announced is None:
        log.warning("kintone announced no totalCount for app %s; read %d records unchecked", app, read)
        return
    if read != announced:
        raise KintoneError(
            0,
            "INCOMPLETE_READ",
            f"kintone announced {announced:,} records in app {app} but the cursor returned {read:,}: "
            "the read is incomplete, so nothing was planned; re-run the sync (if it keeps happening, "
            "records are being added or deleted during the read, or kintone is misbehaving)",
        )


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection could not even be opened (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError))


def _describe(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", None)
    return f"{type(exc).__name__} ({type(inner).__name__})" if inner is not None else type(exc).__name__
