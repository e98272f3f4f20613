"""Large states by reference (idc_sync_airflow.state_refs over the audit store)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from idc_sync.audit import AuditStore
from idc_sync.model import DesiredState, OpKind, OpResult, OpResults, Plan
from idc_sync_airflow import state_refs


def test_a_state_round_trips_through_a_small_reference(tmp_path: Path) -> None:
    store = AuditStore(str(tmp_path))
    results = OpResults(
        [OpResult(key=f"k{i}", kind=OpKind.CREATE_ASSIGNMENT, status="succeeded") for i in range(5_000)]
    )
    ref = state_refs.put(store, results, run_id="manual__2026-12-03T00:00:00+00:00", name="apply.results")
    assert state_refs.is_ref(ref) and len(str(ref)) < 300 < ref["bytes"]
    assert state_refs.get(store, ref, OpResults) == results
    # an older run's inline value still reads
    assert state_refs.get(store, Plan().model_dump(mode="json"), Plan) == Plan()


def test_a_retry_writes_its_own_file_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    store = AuditStore(str(tmp_path))
    first = state_refs.put(store, DesiredState(), run_id="r", name="extract.desired", try_number=1)
    second = state_refs.put(store, DesiredState(), run_id="r", name="extract.desired", try_number=2)
    assert first["ref"] != second["ref"]
    (tmp_path / first["ref"]).write_bytes((tmp_path / second["ref"]).read_bytes()[:-4])
    with pytest.raises((ValueError, EOFError, OSError)):  # truncated gzip or digest mismatch
        state_refs.get(store, first, DesiredState)


def test_old_runs_are_pruned(tmp_path: Path) -> None:
    store = AuditStore(str(tmp_path))
    old = state_refs.put(store, Plan(), run_id="old", name="x.plan")
    new = state_refs.put(store, Plan(), run_id="new", name="x.plan")
    week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).timestamp()
    os.utime(tmp_path / old["ref"], (week_ago, week_ago))

    assert state_refs.prune(store) == 1
    assert not (tmp_path / old["ref"]).exists() and (tmp_path / new["ref"]).exists()
