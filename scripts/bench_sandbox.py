"""Sandbox speed at DESIGN's full scale: a benchmark, not a test (timings depend on the machine's load).

    PYTHONPATH=include .venv/bin/python scripts/bench_sandbox.py

Prints how long generating the full-scale seed takes and how long boto3 needs to page through
ListAccounts of 2,000 accounts (20 a page) against the running sandbox server, throttle off.
"""

from __future__ import annotations

import time

import boto3

from idc_sandbox import seed as seeding
from idc_sandbox.core import Sandbox
from idc_sandbox.server import SandboxServer


def main() -> None:
    started = time.perf_counter()
    seeding.generate_seed(Sandbox(), accounts=2000, users=10_000, permission_sets=500, assignments=50_000)
    print(
        f"generate_seed(2000 accounts, 10000 users, 500 ps, 50000 assignments): {time.perf_counter() - started:.2f}s"
    )

    with SandboxServer(Sandbox()) as server:
        sandbox = server.sandbox
        seeding.generate_seed(
            sandbox, accounts=2000, users=500, groups=10, permission_sets=20, assignments=1000
        )
        sandbox.config.rate_limits["organizations"] = 0  # measure the emulator, not the throttle
        org = boto3.client(
            "organizations",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        started = time.perf_counter()
        seen = sum(
            len(p["Accounts"])
            for p in org.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20})
        )
        print(f"ListAccounts over {seen} accounts (pages of 20): {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()
