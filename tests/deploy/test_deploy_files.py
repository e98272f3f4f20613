"""The deployment files: docker-compose.yaml (parsed: Docker cannot run here), .env.example, the Dockerfile,
the Helm values, and the image's Python environment built from requirements.txt alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
    "airflow-init": None,
}


def _env_example() -> dict[str, str]:
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def test_compose_has_the_official_services_with_healthchecks_and_env_file() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "sandbox", *AIRFLOW_SERVICES}
    for name, command in AIRFLOW_SERVICES.items():
        service = services[name]
        assert service["env_file"] == ".env", name
        if command is not None:
            assert service["command"] == command, name
            assert service["healthcheck"]["test"], name
        assert "/opt/airflow/state" in " ".join(service["volumes"]), name
    for name in ("postgres", "redis", "sandbox"):
        assert services[name]["healthcheck"]["test"], name
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert "--host" in services["sandbox"]["entrypoint"]
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "_AIRFLOW_WWW_USER_CREATE" not in services["airflow-init"]["environment"]  # FAB only


def test_compose_environment_runs_celery_with_base_url_and_shared_state() -> None:
    env = COMPOSE["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__API__BASE_URL"].startswith("${AIRFLOW_BASE_URL:?")
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "IDC_SYNC_CONFIG" not in env  # from .env: the environment block would override the file
    config = json.loads(_env_example()["IDC_SYNC_CONFIG"].strip("'"))
    assert config["audit_path"] == "/opt/airflow/state" and config["state_store_shared"] is True
    assert set(COMPOSE["volumes"]) == {"postgres-db-volume", "idc-sync-state", "idc-sync-xcom"}
    text = (REPO / "docker-compose.yaml").read_text()
    secrets_in_file = [
        line for line in text.splitlines() if "AIRFLOW_CONN_" in line and not line.lstrip().startswith("#")
    ]
    assert not secrets_in_file  # connections (secrets) live in .env


def test_env_example_defines_every_variable_the_compose_file_reads() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "no variables found"
    missing = used - set(_env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"
    example = _env_example()
    for conn in (
        "AWS_DEFAULT",
        "KINTONE_DEFAULT",
        "GRAPH_DEFAULT",
        "SLACK_IDC_SYNC",
        "IDC_SYNC_WEBHOOK",
        "AIRFLOW_API",
    ):
        value = json.loads(example[f"AIRFLOW_CONN_{conn}"].strip("'"))
        assert value["conn_type"], conn


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed here")
def test_docker_compose_renders_the_file(tmp_path: Path) -> None:  # pragma: no cover - needs the binary
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    out = subprocess.run(
        [
            "docker-compose",
            "-f",
            str(REPO / "docker-compose.yaml"),
            "--env-file",
            str(tmp_path / ".env"),
            "config",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_dockerfile_builds_the_runtime_image_only() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert next(line for line in text.splitlines() if line.startswith("FROM")) == (
        "FROM apache/airflow:3.3.2-python3.11"
    )
    for folder in ("dags", "plugins", "include"):
        assert f"COPY --chown=airflow:root {folder} /opt/airflow/{folder}" in text
    assert (
        "-r /requirements.txt" in text
        and "requirements-dev" not in text
        and "requirements-sandbox" not in text
    )


def test_runtime_requirements_hold_no_sandbox_or_test_packages() -> None:
    names = {
        re.split(r"[=<>\[ ]", line)[0].lower()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line and not line.startswith(("#", "-"))
    }
    assert "apache-airflow" in names and "apache-airflow-providers-celery" in names
    assert not names & {"starlette", "uvicorn", "httpx", "moto", "pytest", "hypothesis", "ruff", "mypy"}


def test_helm_values_use_the_image_and_a_shared_state_store() -> None:
    values = yaml.safe_load((REPO / "deploy/helm/values.yaml").read_text())
    assert values["images"]["airflow"]["repository"].endswith("/idc-sync")
    assert values["executor"] in ("KubernetesExecutor", "CeleryExecutor")
    assert values["dags"]["gitSync"]["enabled"] is False
    env = {e["name"]: e["value"] for e in values["env"]}
    config = json.loads(env["IDC_SYNC_CONFIG"])
    assert config["state_store_shared"] is True
    assert values["volumeMounts"][0]["mountPath"] == config["audit_path"]
    assert values["config"]["api"]["base_url"].startswith("https://")


@pytest.mark.integration
def test_the_images_python_environment_imports_the_dags(tmp_path: Path) -> None:
    """requirements.txt alone (what the Dockerfile installs) is enough to parse both DAGs."""
    started = time.monotonic()
    venv = tmp_path / "image-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REPO / "requirements.txt")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    print(f"image environment built in {time.monotonic() - started:.0f} s")
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"b = DagBag(dag_folder={str(REPO / 'dags')!r}); "
        "print(json.dumps({'errors': {k: str(v)[:500] for k, v in b.import_errors.items()}, 'dags': sorted(b.dag_ids)}))"
    )
    env: dict[str, Any] = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")]),
    }
    out = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"errors": {}, "dags": ["idc_sync", "idc_sync_approval"]}, result
