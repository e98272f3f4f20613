"""The audit store: one JSON artifact per try of a run's notify, and the small state that must survive runs.

The location is a local folder by default or any fsspec URL (``s3://bucket/prefix``) through
universal-pathlib, so production keeps audits in object storage by changing one setting.
Only plan/result data is written: no connection, token or secret ever reaches this store.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from upath import UPath

FEEDBACK_STATE = "state/feedback.json"
SCIM_STATE = "state/scim.json"


class AuditStore:
    def __init__(self, root: str) -> None:
        self.root = UPath(root)

    def _path(self, relative: str) -> UPath:
        return self.root / relative

    def write_run(self, run_id: str, artifact: dict[str, Any], try_number: int | None = None) -> str:
        """Write ``runs/<date>/<run_id>.try<N>.json`` (one artifact per try of notify); returns its
        location. An existing artifact is never overwritten: a clash (a try recorded twice) gets a
        ``-<k>`` suffix, so what an earlier try said stays readable."""
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)
        day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        stem = f"runs/{day}/{safe}" + (f".try{int(try_number)}" if try_number is not None else "")
        path = self._path(f"{stem}.json")
        k = 1
        while path.exists():
            k += 1
            path = self._path(f"{stem}-{k}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(artifact, indent=2, sort_keys=True, default=str))
        return str(path)

    def read_state(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        if not path.exists():
            return {}
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}

    def write_state(self, name: str, data: dict[str, Any], *, compact: bool = False) -> None:
        """Replace a state file; ``compact`` for large ones (the observed-state cache: megabytes)."""
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name + ".tmp")
        text = (
            json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1, sort_keys=True)
        )
        tmp.write_text(text)
        tmp.rename(path)  # atomic on a local disk; copy + delete on object storage

    def list_runs(self) -> list[str]:
        base = self._path("runs")
        if not base.exists():
            return []
        return sorted(str(p) for p in base.glob("*/*.json"))
