"""The sandbox's injectable clock: everything time-dependent follows ``Sandbox.clock``.

A :class:`ManualClock` moves only when a test advances it, so time-dependent behaviour is checked by
counting events, never by sleeping or timing (which fails on a loaded machine).
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from idc_sandbox import graph
from idc_sandbox.core import ManualClock, Sandbox, SystemClock
from idc_sandbox.seed import CREDENTIALS, load_named_seed, load_seed

ASG_TOKEN = CREDENTIALS["kintone"]["tokens"]["2"]
START = dt.datetime(2026, 4, 1, 0, 0, tzinfo=dt.UTC).timestamp()


def test_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock(start=START)
    mono = clock.monotonic()
    assert (clock.monotonic(), clock.time()) == (mono, START)
    clock.advance(90)
    assert (clock.monotonic(), clock.time()) == (mono + 90, START + 90)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_default_is_the_real_clock() -> None:
    assert isinstance(Sandbox().clock, SystemClock)


def test_timestamps_and_call_log_follow_the_sandbox_clock(sandbox: Sandbox, sandbox_url: str) -> None:
    load_seed(sandbox, load_named_seed("demo"))
    clock = sandbox.clock = ManualClock(start=START)
    r = requests.post(
        f"{sandbox_url}/k/v1/record/comment.json",
        json={"app": 2, "record": 1, "comment": {"text": "hello"}},
        headers={"X-Cybozu-API-Token": ASG_TOKEN},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    [comment] = [c for c in sandbox.world.kintone.apps[2].comments[1] if c.text == "hello"]
    assert comment.created_at == dt.datetime.fromtimestamp(START, dt.UTC)
    assert sandbox.calls.calls("kintone")[-1].at == START

    clock.advance(3600)
    graph.run_scim_cycle(sandbox)  # an Entra provisioning cycle ends "now" on the sandbox clock
    job = sandbox.world.entra.jobs[0]
    assert job.last_successful_execution is not None
    assert job.last_successful_execution["timeEnded"] == dt.datetime(2026, 4, 1, 1, 0, tzinfo=dt.UTC)
