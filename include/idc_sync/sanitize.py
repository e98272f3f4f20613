"""Escaping of untrusted text (kintone names, reasons, AWS/kintone error messages) for each sink.

Record text is written by thousands of requesters: a name like ``<!channel>`` would ping a whole Slack
channel, ``<https://evil|click>`` would render as a disguised link, and ESC/BEL bytes in a task log
repaint or beep the reader's terminal. Every sink cleans what it shows with one of these functions:
Slack with :func:`slack_escape` (after :func:`strip_control`), kintone comments, the DagRun note and log
lines with :func:`strip_control`. Errors that may carry credentials go through :func:`scrub_secrets`.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Iterable

# ANSI/VT escape sequences (CSI ... final byte, OSC ... BEL/ST, two-byte ESC x) first, so their
# printable tails ("[31m") go with them; then every other C0/C1 control character except \n and \t.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_control(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (``\\n`` and ``\\t`` kept;
    ``\\r`` dropped too: a bare carriage return lets a log line overwrite what came before it)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


# Characters a reader cannot see: C0/C1 controls (but \n, \t), zero-width and joiner characters, bidi
# overrides (U+202E turns "exe.txt" into "txt.exe" on screen) and the byte-order mark.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
PROBLEM_TEXT_LIMIT = 2_000


def visible(text: str, limit: int = PROBLEM_TEXT_LIMIT) -> str:
    """``text`` as a requester must read it: every invisible character shown as ``<U+200B>`` (a name
    that looks right but is not says why), and at most ``limit`` characters (a record cannot make a
    comment or a Slack line megabytes long)."""
    shown = _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def slack_escape(text: str) -> str:
    """``text`` safe inside Slack mrkdwn: control characters removed, then ``&``, ``<``, ``>`` escaped
    as Slack documents (https://api.slack.com/reference/surfaces/formatting#escaping). With ``<`` and
    ``>`` escaped, ``<!channel>``, ``<@U123>`` and ``<url|label>`` are shown as text, never acted on."""
    return strip_control(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_code(text: str) -> str:
    """Escaped text for inside a ``code`` span: backticks would close the span, so they become ``'``."""
    return slack_escape(text).replace("`", "'")


_SECRET_PATTERNS = [
    # Slack webhook paths: /services/T.../B.../<secret>
    (re.compile(r"(/services/[A-Za-z0-9]+/[A-Za-z0-9]+/)[A-Za-z0-9]+"), r"\1***"),
    # header / key=value / "key": "value" forms of well-known credential names
    (
        re.compile(
            r"(?i)((?:x-cybozu-api-token|x-cybozu-authorization|authorization|api[_-]?token|token|"
            r"password|passwd|secret|client_secret|access_token|refresh_token|aws_secret_access_key|"
            r"aws_session_token|x-amz-security-token)[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?"
            r"[^\s\"',;&}]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
]


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values and credential-shaped substrings replaced by ``***``.

    ``secrets``: values known to be secret (connection passwords, tokens); the patterns catch the rest
    (webhook paths, ``token=...``, ``Authorization: Bearer ...``, ``user:password@host``)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class CleanTextFilter(logging.Filter):
    """Removes control characters and terminal escapes from a log record's text (message + args),
    so a kintone name with ESC/BEL cannot repaint or beep the terminal of whoever reads the task log."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        clean = strip_control(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter(package_names: Iterable[str] = ("idc_sync", "idc_sync_airflow")) -> None:
    """Put :class:`CleanTextFilter` on the project's loggers: each package logger and every module
    logger below it. A logger's filter does not apply to its children's records, so each module's
    logger (``logging.getLogger(__name__)``) gets its own, created ahead of the module's import
    (loggers are singletons by name). Idempotent."""
    names: set[str] = set()
    for package_name in package_names:
        names.add(package_name)
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=package_name + "."):
            names.add(info.name)
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, CleanTextFilter) for f in logger.filters):
            logger.addFilter(CleanTextFilter())
