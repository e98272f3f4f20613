"""Where the state store may live for an executor: every worker must see the same state.

The state store (``audit_path``) holds what runs remember (comment fingerprints, plan memory, SCIM alert
state, caches, the apply journal, large task outputs by reference). On one machine (LocalExecutor) a local
folder is right. Where tasks run on several machines (CeleryExecutor, KubernetesExecutor, EdgeExecutor), a
local folder would give every worker its own memory: duplicate comments, wrong drift labels, lost journals.
Such a deployment must use object storage or declare that the folder is a mount shared by every worker.
"""

from __future__ import annotations

DISTRIBUTED_EXECUTORS = ("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor", "CeleryKubernetesExecutor")


def is_local(path: str) -> bool:
    """A folder on the worker's own disk (no scheme, or ``file://``)."""
    return "://" not in path or path.startswith("file://")


def distributed(executor: str) -> list[str]:
    """The executors of ``executor`` (Airflow allows a comma-separated list) that run tasks on several
    machines."""
    names = [part.strip().split(".")[-1].split(":")[-1] for part in executor.split(",") if part.strip()]
    return [n for n in names if n in DISTRIBUTED_EXECUTORS]


def state_store_problem(executor: str, audit_path: str, *, shared: bool) -> str | None:
    """Why this deployment must not start with this state store (None: it may)."""
    spread = distributed(executor)
    if not spread or not is_local(audit_path) or shared:
        return None
    return (
        f"audit_path {audit_path!r} is a local folder, but {', '.join(spread)} runs tasks on several machines: "
        "each worker would keep its own memory (duplicate comments, wrong drift labels, lost apply journals). "
        "Set audit_path to object storage (e.g. s3://<aws_conn_id>@<bucket>/idc-sync) or, if every worker "
        "mounts this folder (NFS, EFS, one machine), set state_store_shared=true in the idc_sync configuration."
    )
