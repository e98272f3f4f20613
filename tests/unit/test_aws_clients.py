"""IdcClients.from_session: endpoint, retries, client-side pacing."""

from __future__ import annotations

import boto3

from idc_sync.aws_clients import IdcClients, RateLimiter


def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )


def test_builds_five_clients_on_one_endpoint_with_retries() -> None:
    clients = IdcClients.from_session(session(), endpoint_url="http://127.0.0.1:9")
    names = {
        "sso_admin": "sso-admin",
        "identitystore": "identitystore",
        "organizations": "organizations",
        "iam": "iam",
        "accessanalyzer": "accessanalyzer",
    }
    for attr, service in names.items():
        client = getattr(clients, attr)
        assert client.meta.service_model.service_name == service
        assert client.meta.endpoint_url == "http://127.0.0.1:9"
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 9}
    assert clients.sso_admin.meta.region_name == "eu-west-1"


def test_retry_config_overrides() -> None:
    clients = IdcClients.from_session(session(), retry_config={"mode": "adaptive", "max_attempts": 3})
    assert clients.iam.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    clients = IdcClients.from_session(session(), retries={"total_max_attempts": 5}, region_name="us-east-1")
    assert clients.iam.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert clients.sso_admin.meta.region_name == "us-east-1"


def test_rate_limiter_paces_after_the_burst() -> None:
    """Counted on a fake clock that only the limiter's own sleeps move: no dependence on machine load."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    # 64/s: 1/64 s is exact in binary floating point, so the fake time adds up without rounding residue
    # (a residue would make the limiter sleep ~1e-18 s, which a float clock at 0.5 cannot register)
    limiter = RateLimiter(64.0, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(64):  # the burst: one second's worth, no waiting
        limiter.acquire()
    assert sleeps == []
    for _ in range(32):  # then one token per 1/64 s
        limiter.acquire()
    assert sleeps == [1 / 64] * 32
    assert now[0] == 0.5
