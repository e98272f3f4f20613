"""The audit store: one JSON artifact per try of a run's notify, and the small state that must survive runs.

The location is a local folder by default or any fsspec URL (``s3://bucket/prefix``) through
universal-pathlib, so production keeps audits in object storage by changing one setting.
Only plan/result data is written: no connection, token or secret ever reaches this store.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
from typing import Any

from upath import UPath

FEEDBACK_STATE = "state/feedback.json"
SCIM_STATE = "state/scim.json"


class AuditStore:
    def __init__(self, root: str | UPath) -> None:
        """``root``: a local folder, an fsspec URL, or a ready path (e.g. Airflow's ``ObjectStoragePath``,
        which resolves ``s3://<conn_id>@bucket`` through an Airflow connection)."""
        self.root = root if isinstance(root, UPath) else UPath(root)

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

    def write_state(self, name: str, data: dict[str, Any]) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.rename(path)  # atomic on a local disk; copy + delete on object storage

    def read_state_bytes(self, name: str) -> bytes | None:
        """A state file's raw JSON (for pydantic's fast JSON parsing of large states); None if missing."""
        path = self._path(name)
        return path.read_bytes() if path.exists() else None

    def write_state_bytes(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)

    def write_blob(self, relative: str, data: bytes) -> dict[str, Any]:
        """Write ``data`` gzipped under ``relative``; returns the reference (path, size, digest) that
        travels through XCom instead of the data."""
        path = self._path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, compresslevel=5))
        return {"ref": relative, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def read_blob(self, ref: dict[str, Any]) -> bytes:
        """The data of a reference from ``write_blob``; a changed or truncated file is refused."""
        data = gzip.decompress(self._path(str(ref["ref"])).read_bytes())
        if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
            raise ValueError(f"{ref['ref']} does not hold what was written (digest mismatch)")
        return data

    def prune(self, folder: str, *, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
        """Delete the run folders under ``folder`` last written before ``now - older_than``."""
        base = self._path(folder)
        if not base.exists():
            return 0
        limit = ((now or dt.datetime.now(dt.UTC)) - older_than).timestamp()
        removed = 0
        for run in base.iterdir():
            files = [f for f in run.rglob("*") if f.is_file()] if run.is_dir() else []
            if files and max(f.stat().st_mtime for f in files) < limit:
                for f in files:
                    f.unlink()
                removed += 1
        return removed

    def list_states(self, folder: str) -> list[str]:
        """The names (relative, for ``read_state``) of the state files directly under ``folder``."""
        base = self._path(folder)
        if not base.exists():
            return []
        return sorted(f"{folder}/{p.name}" for p in base.iterdir() if p.name.endswith(".json"))

    def delete_state(self, name: str) -> None:
        path = self._path(name)
        if path.exists():
            path.unlink()

    def list_runs(self) -> list[str]:
        base = self._path("runs")
        if not base.exists():
            return []
        return sorted(str(p) for p in base.glob("*/*.json"))
