"""IAM Identity Center, IAM and Organizations input rules, each written once.

Why: records.py (what a requester typed), validation.py (a permission set before apply) and plan.py (targets)
each kept their own patterns, and they drifted apart (``PT3600S`` was a valid session duration for one and not
for the other). The patterns and limits are those of botocore's sso-admin, iam and organizations service
models and the IdC quotas page. Patterns match the whole value (``fullmatch``: a ``$`` would let a
trailing newline through), and digits are ASCII only (``\\d`` takes full-width and Arabic-Indic digits).
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- permission set
PERMISSION_SET_NAME_MAX = 32
_PERMISSION_SET_NAME = re.compile(r"[\w+=,.@-]{1,32}", re.ASCII)

DESCRIPTION_MAX = 700
_DESCRIPTION_CHARS = re.compile(r"[\t\n\r\x20-\x7e\xa1-\xff]*")

# sso-admin's Duration is any ISO-8601 duration; IdC accepts 1 to 12 hours. Hours, minutes and seconds
# cover every value in that range (PT1H, PT90M, PT3600S, PT1H30M).
SESSION_DURATION_DEFAULT = "PT1H"
SESSION_DURATION_MIN = 3600  # seconds
SESSION_DURATION_MAX = 12 * 3600
_DURATION = re.compile(r"PT(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?")

RELAY_STATE_MAX = 240
_RELAY_STATE = re.compile(r"""[a-zA-Z0-9&$@#\\/%?=~\-_'"|!:,.;*+\[\] (){}]+""")

INLINE_POLICY_MAX_CHARS = 32_768
INLINE_POLICY_MAX_NON_WHITESPACE = 10_240  # IdC quotas page: the same policy without whitespace
_INLINE_POLICY_CHARS = re.compile(r"[\t\n\r\x20-\xff]+")

# --------------------------------------------------------------------------- attached policies
ATTACHED_POLICIES_MAX = 20  # AWS plus customer managed policies of one permission set
# IAM's default "managed policies per role": more works only where the quota was raised in every account.
IAM_ROLE_POLICIES_DEFAULT_QUOTA = 10
POLICY_VERSIONS = ("2012-10-17", "2008-10-17")  # the IAM policy language's two Version values
POLICY_PATH_MAX = 512
_POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)
_POLICY_PATH = re.compile(r"(/[A-Za-z0-9.,+@=_-]+)*/")
_MANAGED_POLICY_ARN = re.compile(
    r"arn:aws(-[a-z]{1,5}){0,3}:iam::aws:policy(/[A-Za-z0-9.,+@=_-]+)*/([A-Za-z0-9.,+=@_-]{1,128})"
)

# --------------------------------------------------------------------------- assignment targets
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_DASHED_ACCOUNT_ID = re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{4}")  # as the AWS console shows it
_OU_ID = re.compile(r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}")
_ROOT_ID = re.compile(r"r-[0-9a-z]{4,32}")


def _bad_characters(text: str, allowed: re.Pattern[str], limit: int = 10) -> str:
    """The distinct characters of ``text`` that ``allowed`` rejects, sorted, at most ``limit``."""
    return "".join(sorted({ch for ch in text if not allowed.fullmatch(ch)})[:limit])


def is_permission_set_name(name: str) -> bool:
    """1-32 ASCII letters, digits and ``+ = , . @ - _``."""
    return bool(_PERMISSION_SET_NAME.fullmatch(name))


def description_bad_characters(text: str) -> str:
    """Characters IdC refuses in a description (Latin-1 only: no Japanese, no emoji); "" when none."""
    return _bad_characters(text, _DESCRIPTION_CHARS)


def is_description(text: str) -> bool:
    return len(text) <= DESCRIPTION_MAX and bool(_DESCRIPTION_CHARS.fullmatch(text))


def duration_seconds(value: str) -> int | None:
    """``PT[nH][nM][nS]`` (upper case, ASCII digits) -> seconds; None when not such a duration."""
    match = _DURATION.fullmatch(value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def is_session_duration(value: str) -> bool:
    """A duration IdC accepts for a permission set: ``PT1H`` to ``PT12H``."""
    seconds = duration_seconds(value)
    return seconds is not None and SESSION_DURATION_MIN <= seconds <= SESSION_DURATION_MAX


def normalise_session_duration(value: str) -> str | None:
    """What a person typed (``pt4h``, `` PT90M ``) -> the duration as IdC stores it; None if not valid."""
    text = value.strip().upper()
    return text if text.isascii() and is_session_duration(text) else None


def is_relay_state(value: str) -> bool:
    """An ``https://`` URL of at most 240 characters (no non-ASCII, no angle brackets). IdC's own pattern
    also takes ``javascript:alert(1)`` or ``http://``: the portal sends people to this address after
    sign-in, so only an https URL is accepted."""
    return (
        len(value) <= RELAY_STATE_MAX
        and value.lower().startswith("https://")
        and bool(_RELAY_STATE.fullmatch(value))
    )


def inline_policy_bad_characters(text: str) -> str:
    """Characters IdC refuses in an inline policy (Latin-1 only); "" when none."""
    return _bad_characters(text, _INLINE_POLICY_CHARS)


def inline_policy_non_whitespace(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def inline_policy_too_large(text: str) -> bool:
    return (
        len(text) > INLINE_POLICY_MAX_CHARS
        or inline_policy_non_whitespace(text) > INLINE_POLICY_MAX_NON_WHITESPACE
    )


def is_policy_name(name: str) -> bool:
    """An IAM (customer managed) policy name: 1-128 ASCII letters, digits and ``+ = , . @ - _``."""
    return bool(_POLICY_NAME.fullmatch(name))


def is_policy_path(path: str) -> bool:
    """An IAM path: ``/`` or ``/a/b/``, at most 512 characters."""
    return len(path) <= POLICY_PATH_MAX and bool(_POLICY_PATH.fullmatch(path))


def is_managed_policy_arn(arn: str) -> bool:
    """An AWS managed policy ARN (``arn:aws:iam::aws:policy/[path/]Name``), any partition."""
    return bool(_MANAGED_POLICY_ARN.fullmatch(arn))


def is_account_id(value: str) -> bool:
    """Exactly 12 ASCII digits."""
    return bool(_ACCOUNT_ID.fullmatch(value))


def is_ou_id(value: str) -> bool:
    """``ou-`` + the root's 4-32 characters + ``-`` + 8-32 characters, lower case."""
    return bool(_OU_ID.fullmatch(value))


def is_root_id(value: str) -> bool:
    """``r-`` + 4-32 lower-case letters or digits."""
    return bool(_ROOT_ID.fullmatch(value))


def normalise_target(value: str) -> str | None:
    """A 12-digit account id (``1234-5678-9012`` accepted) or an OU id (any case) -> canonical; else None."""
    text = value.strip()
    if not text.isascii():  # full-width digits, or a Kelvin sign that .lower() would turn into "k"
        return None
    if _DASHED_ACCOUNT_ID.fullmatch(text):
        text = text.replace("-", "")
    if is_account_id(text):
        return text
    lowered = text.lower()
    return lowered if is_ou_id(lowered) else None
