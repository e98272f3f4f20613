"""Sandbox IAM (AWS query protocol): GetPolicy for AWS managed policies. STUB: to be implemented."""

from __future__ import annotations

from starlette.responses import Response

from idc_sandbox.core import Sandbox

SERVICE = "iam"


async def handle_query(sandbox: Sandbox, form: dict[str, str]) -> Response:
    raise NotImplementedError
