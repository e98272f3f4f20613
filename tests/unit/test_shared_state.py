"""shared_state: a multi-machine executor refuses a local state folder unless it is declared shared."""

from __future__ import annotations

import pytest

from idc_sync.audit import AuditStore
from idc_sync.shared_state import distributed, is_local, state_store_problem


@pytest.mark.parametrize(
    ("executor", "spread"),
    [
        ("LocalExecutor", []),
        ("SequentialExecutor", []),
        ("CeleryExecutor", ["CeleryExecutor"]),
        ("airflow.providers.celery.executors.celery_executor.CeleryExecutor", ["CeleryExecutor"]),
        ("LocalExecutor,KubernetesExecutor", ["KubernetesExecutor"]),
        ("my_team:CeleryExecutor", ["CeleryExecutor"]),
    ],
)
def test_which_executors_run_tasks_on_several_machines(executor: str, spread: list[str]) -> None:
    assert distributed(executor) == spread


def test_local_folder_with_celery_is_refused_with_what_to_set() -> None:
    problem = state_store_problem("CeleryExecutor", "audit", shared=False)
    assert problem is not None
    assert "'audit' is a local folder" in problem and "CeleryExecutor" in problem
    assert "s3://<aws_conn_id>@<bucket>/idc-sync" in problem and "state_store_shared=true" in problem


@pytest.mark.parametrize(
    ("executor", "path", "shared"),
    [
        ("LocalExecutor", "audit", False),  # one machine
        ("CeleryExecutor", "/mnt/efs/idc-sync", True),  # declared shared mount
        ("KubernetesExecutor", "s3://aws_default@bucket/idc-sync", False),  # object storage
    ],
)
def test_what_may_start(executor: str, path: str, shared: bool) -> None:
    assert state_store_problem(executor, path, shared=shared) is None


def test_local_paths() -> None:
    assert is_local("audit") and is_local("/var/lib/idc") and is_local("file:///var/lib/idc")
    assert not is_local("s3://aws_default@bucket/x") and not is_local("memory://x")


@pytest.mark.parametrize("root", ["memory://idc-sync-test", "file://{tmp}", "{tmp}"])
def test_the_store_works_on_object_storage_urls_and_folders(root: str, tmp_path) -> None:
    store = AuditStore(root.format(tmp=tmp_path))
    store.write_state("state/x.json", {"a": 1})
    assert store.read_state("state/x.json") == {"a": 1}
    assert store.list_states("state") == ["state/x.json"]
    store.delete_state("state/x.json")
    assert store.read_state("state/x.json") == {} and store.list_states("state") == []
