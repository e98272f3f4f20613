"""``ScimHealthSensor``: the ``scim_health`` task. Its XCom (return value) is the SCIM verdict.

It waits a little for SCIM to be healthy (transient Graph errors, a cycle in progress) but it never stops
the run because of SCIM: at its timeout it returns the unhealthy verdict and succeeds, so the sync still
runs and missing principals stay *pending* (DESIGN.md safety rule 4). Only an Airflow-side failure (no
triggerer for far too long) fails it.

- ``deferrable=True`` (default): one quick inline check; if not healthy, defer to
  :class:`ScimHealthTrigger` (waits in the triggerer, no worker slot), resume in ``execute_complete``.
- ``deferrable=False``: classic sensor, ``mode="reschedule"`` by default (no triggerer needed); ``poke``
  returns a ``PokeReturnValue`` carrying the verdict, done when healthy or when the next poke would pass
  ``timeout``.

XCom: ``ScimVerdict.model_dump(mode="json")`` =
``{"status": "healthy"|"unhealthy"|"unknown", "reason": str, "checked_at": ISO-8601, "jobs": [...],
"interval_minutes": int|None, "error_code": str|None, "error_status": int|None}``. Never a secret.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from idc_sync.scim import ScimVerdict, check_scim_health
from idc_sync_airflow.graph_hook import GraphHook
from idc_sync_airflow.triggers import ScimHealthTrigger

# If the triggerer never answers, the task fails this long after the trigger's own deadline (visible).
TRIGGERER_GRACE_SECONDS = 120


class ScimHealthSensor(BaseSensorOperator):
    """Check Entra SCIM provisioning health through Microsoft Graph; return the verdict (never fail on it).

    :param graph_conn_id: Airflow connection with the Graph app credentials (see ``GraphHook``).
    :param max_staleness: last successful provisioning cycle must be younger than this; default: the
        ``scim_max_staleness_minutes`` of the ``idc_sync_config`` Variable (90 min).
    :param service_principal_id: overrides the connection's ``extra.service_principal_id``.
    :param deferrable: wait in the triggerer (default) instead of rescheduling.
    :param check_before_defer: check once inline and skip the deferral when already healthy (or failing
        permanently); ``False`` always defers (useful to test the triggerer path).
    :param skip_param: name of a boolean DAG param that skips the check (verdict "unknown": missing
        principals stay pending); ``None`` disables it.
    """

    template_fields: Sequence[str] = ("graph_conn_id", "service_principal_id")
    ui_color = "#d8e8f8"

    def __init__(
        self,
        *,
        graph_conn_id: str = GraphHook.default_conn_name,
        max_staleness: dt.timedelta | float | None = None,
        service_principal_id: str | None = None,
        deferrable: bool = True,
        check_before_defer: bool = True,
        skip_param: str | None = "skip_scim_check",
        poke_interval: dt.timedelta | float = 30,
        timeout: dt.timedelta | float = 240,
        mode: str = "reschedule",
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, mode=mode, **kwargs)
        self.graph_conn_id = graph_conn_id
        if max_staleness is not None and not isinstance(max_staleness, dt.timedelta):
            max_staleness = dt.timedelta(seconds=max_staleness)
        self.max_staleness: dt.timedelta | None = max_staleness
        self.skip_param = skip_param
        self.service_principal_id = service_principal_id
        self.deferrable = deferrable
        self.check_before_defer = check_before_defer
        self._poke_started: float | None = None

    # ------------------------------------------------------------------ shared
    def _staleness(self) -> dt.timedelta:
        if self.max_staleness is None:
            from idc_sync_airflow.settings import load_config

            self.max_staleness = dt.timedelta(minutes=load_config().scim_max_staleness_minutes)
        return self.max_staleness

    def _skipped(self, context: Any) -> dict[str, Any] | None:
        params = (context.get("params") if hasattr(context, "get") else None) or {}
        if self.skip_param and params.get(self.skip_param):
            verdict = ScimVerdict.unknown(
                f"SCIM check skipped ({self.skip_param}=true); missing users stay pending"
            )
            self.log.info("%s", verdict.reason)
            return verdict.to_xcom()
        return None

    def _check(self) -> ScimVerdict:
        now = dt.datetime.now(dt.UTC)
        try:
            settings = GraphHook.get_settings(self.graph_conn_id)
        except Exception as exc:
            return ScimVerdict(
                status="unhealthy",
                reason=f"cannot use Graph connection {self.graph_conn_id!r}: {type(exc).__name__}: {exc}",
                checked_at=now,
                error_code="ConnectionConfig",
            )
        client = settings.client(max_attempts=3, max_retry_after=min(30.0, self.poke_interval or 30.0))
        sp_id = self.service_principal_id or settings.service_principal_id
        return check_scim_health(client, sp_id, now, self._staleness())

    def _finish(self, verdict: dict[str, Any], *, timed_out: bool = False) -> dict[str, Any]:
        if verdict.get("status") == "healthy":
            self.log.info("SCIM provisioning healthy: %s", verdict.get("reason"))
        else:
            self.log.warning(
                "SCIM provisioning %s%s: %s. The sync continues; users/groups missing from Identity Center "
                "stay pending until provisioning works again.",
                verdict.get("status"),
                " (still, at the sensor timeout)" if timed_out else "",
                verdict.get("reason"),
            )
        return verdict

    # ------------------------------------------------------------------ deferrable path
    def execute(self, context: Any) -> Any:
        skipped = self._skipped(context)
        if skipped is not None:
            return skipped
        if not self.deferrable:
            return super().execute(context)
        if self.check_before_defer:
            verdict = self._check()
            if verdict.healthy or verdict.permanent_failure:
                return self._finish(verdict.to_xcom())
            self.log.info("SCIM not healthy yet (%s); deferring to the triggerer", verdict.reason)
        self.defer(
            trigger=ScimHealthTrigger(
                graph_conn_id=self.graph_conn_id,
                deadline=time.time() + self.timeout,
                max_staleness_seconds=self._staleness().total_seconds(),
                poke_interval=self.poke_interval,
                service_principal_id=self.service_principal_id,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout + TRIGGERER_GRACE_SECONDS),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or not isinstance(event.get("verdict"), dict):
            raise AirflowException(f"ScimHealthTrigger sent an unexpected event: {event!r}")
        return self._finish(event["verdict"], timed_out=bool(event.get("timed_out")))

    # ------------------------------------------------------------------ reschedule / poke path
    def _elapsed(self, context: Any) -> float:
        if self.reschedule:
            ti = context["ti"]
            first = (
                ti.get_first_reschedule_date(context) if hasattr(ti, "get_first_reschedule_date") else None
            )
            if first is not None:
                return (dt.datetime.now(dt.UTC) - first).total_seconds()
            return 0.0
        if self._poke_started is None:
            self._poke_started = time.monotonic()
        return time.monotonic() - self._poke_started

    def poke(self, context: Any) -> PokeReturnValue:
        elapsed = self._elapsed(context)
        verdict = self._check()
        if verdict.healthy or verdict.permanent_failure:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(verdict.to_xcom()))
        if elapsed + self.poke_interval >= self.timeout:
            # The next poke would be past the timeout: return the unhealthy verdict instead of failing.
            return PokeReturnValue(is_done=True, xcom_value=self._finish(verdict.to_xcom(), timed_out=True))
        self.log.info(
            "SCIM %s (%s); poking again in %.0f s", verdict.status, verdict.reason, self.poke_interval
        )
        return PokeReturnValue(is_done=False)
