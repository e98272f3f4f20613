"""``python -m idc_sandbox``: run the sandbox in the foreground (what ``make sandbox`` does).

    python -m idc_sandbox --port 8765 --host 127.0.0.1 --seed demo|path/to/seed.json|gen:accounts=2000,users=10000
                          [--async-latency 0.5] [--log-level warning]

The port defaults to ``$SANDBOX_PORT`` (else 8765). Binding anything but loopback is refused unless
``--allow-remote`` is given: the control API has no authentication by design.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import uvicorn

from idc_sandbox import seed as seeding
from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.server import build_app

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m idc_sandbox",
        description="Local emulator of AWS IAM Identity Center & co., kintone, Microsoft Graph and Slack.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SANDBOX_PORT") or 8765),
        help="port (default $SANDBOX_PORT or 8765)",
    )
    parser.add_argument(
        "--seed",
        default="demo",
        help="demo | path/to/seed.json | gen:accounts=2000,users=10000,permission_sets=500,assignments=50000 "
        "| none (default demo)",
    )
    parser.add_argument(
        "--async-latency", type=float, default=None, help="seconds until async IdC ops finish"
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    return parser.parse_args(argv)


def banner(url: str, summary: dict[str, object]) -> str:
    creds = seeding.CREDENTIALS
    k, g, s = creds["kintone"], creds["graph"], creds["slack"]
    lines = [
        f"idc-sandbox listening on {url}",
        f"  seeded: {json.dumps(summary, ensure_ascii=False)}",
        "",
        f"  AWS (sso-admin, identitystore, organizations, iam, access-analyzer): endpoint_url={url}",
        "      any SigV4 credentials, e.g. AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing, region us-east-1",
        f"  kintone: {url}/k/v1/...",
        f"      app {k['permission_sets_app']} (permission sets) token {k['tokens'][str(k['permission_sets_app'])]}",
        f"      app {k['assignments_app']} (assignments)     token {k['tokens'][str(k['assignments_app'])]}",
        f"      password login {k['login']} / {k['password']}",
        f"  Microsoft Graph: {url}/v1.0/...  token: {url}/{g['tenant_id']}/oauth2/v2.0/token",
        f"      tenant {g['tenant_id']}  client id {g['client_id']}  secret {g['client_secret']}",
        f"      service principal {g['service_principal_id']}",
        f"  Slack webhook: {url}{s['webhook_path']}",
        f"  control API: {url}/_sandbox/ (reset, seed, faults, scim/cycle, calls, counters, slack/messages, ...)",
        "  (sandbox-only fake secrets)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host not in LOOPBACK and not args.allow_remote:
        print(
            f"refusing to bind {args.host}: the control API is unauthenticated (use --allow-remote)",
            file=sys.stderr,
        )
        return 2
    config = SandboxConfig()
    if args.async_latency is not None:
        config.async_latency_seconds = args.async_latency
    sandbox = Sandbox(config)
    summary: dict[str, object] = {}
    if args.seed and args.seed != "none":
        try:
            summary = seeding.load_spec(sandbox, args.seed)
        except (seeding.SeedError, OSError, ValueError) as err:
            print(f"cannot load seed {args.seed!r}: {err}", file=sys.stderr)
            return 2
    url = f"http://{args.host}:{args.port}"
    print(banner(url, summary), flush=True)
    uvicorn.run(build_app(sandbox), host=args.host, port=args.port, log_level=args.log_level, lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
