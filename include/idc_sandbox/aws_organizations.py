"""Sandbox organizations (AWS JSON 1.1, X-Amz-Target AWSOrganizationsV20161128.<Operation>). STUB: to be implemented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idc_sandbox.core import Sandbox

SERVICE = "organizations"
TARGET_PREFIX = "AWSOrganizationsV20161128"
# fault kind -> (error code, HTTP status, default message)
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("ThrottlingException", 400, "Rate exceeded"),
    "conflict": ("ConflictException", 400, "There is a conflicting operation in process."),
    "error5xx": ("InternalServerException", 500, "An internal error occurred."),
    "access_denied": ("AccessDeniedException", 400, "User is not authorized to perform this operation."),
}
OPERATIONS: dict[str, Callable[[Sandbox, dict[str, Any]], dict[str, Any]]] = {}
