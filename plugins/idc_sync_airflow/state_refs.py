"""Large task outputs by reference: the desired and observed states, the plan and the results.

At 2,000 accounts these are megabytes each (a cold sync's plan holds 50,000 operations). Passed as XCom
values they would be serialized by Airflow's serde walking every nested object, rendered into the task's
template fields, and copied into each downstream task. Instead each is written once, as compact gzipped
JSON, to the project's state store (a local folder or S3 through an Airflow connection: ``audit_path``),
under ``refs/<run>/``; the XCom holds ``{"ref", "bytes", "sha256"}`` and readers parse it with pydantic's
JSON parser. Old runs' folders are pruned by ``notify``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar

from pydantic import BaseModel

from idc_sync.audit import AuditStore

M = TypeVar("M", bound=BaseModel)

REFS = "refs"
KEEP = dt.timedelta(days=2)


def _folder(run_id: str) -> str:
    return f"{REFS}/{re.sub(r'[^A-Za-z0-9_.+-]', '_', run_id)}"


def put(
    store: AuditStore, model: BaseModel, *, run_id: str, name: str, try_number: int = 1
) -> dict[str, Any]:
    """Write ``model`` for this run (one file per task try: a retry never overwrites what a finished
    try's readers may still read); returns the reference to return as XCom."""
    return store.write_blob(
        f"{_folder(run_id)}/{name}.try{int(try_number)}.json.gz", model.model_dump_json().encode()
    )


def get(store: AuditStore, value: Any, model: type[M]) -> M:
    """The model behind an XCom value: a reference from :func:`put`, or the model's JSON itself (an
    older run's inline value)."""
    if is_ref(value):
        return model.model_validate_json(store.read_blob(value))
    return model.model_validate(value)


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("ref"), str) and "sha256" in value


def prune(store: AuditStore, now: dt.datetime | None = None) -> int:
    return store.prune(REFS, older_than=KEEP, now=now)
