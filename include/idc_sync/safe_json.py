"""JSON parsing of record text with limits: one function for everything that ``json.loads`` a record's text.

Why: kintone text is written by anyone. Python's ``json`` recurses once per nesting level, so 3,000 ``[``
(6 KB, under every size limit) raise ``RecursionError`` instead of a decode error, and a number of more than
4,300 digits raises a plain ``ValueError``; the same objects then blow up again in ``json.dumps`` and in
every recursive walk. Parsing through :func:`loads` turns all of that into one exception type,
:class:`UnsafeJsonError` (a ``ValueError``, as callers already expect for bad JSON), with a ``reason``
saying what is wrong and where, before the decoder ever sees a hostile text.

IAM policies nest at most about six levels (document > Statement list > statement > Condition > operator >
key > value list), so :data:`MAX_DEPTH` leaves ample room for any real policy.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

MAX_DEPTH = 32
# IdC accepts 32,768 characters of inline policy; the parse limit sits well above it so that a too-large
# policy is still parsed (and its other mistakes reported) while the cost of one record stays bounded.
MAX_CHARS = 131_072
MAX_NUMBER_DIGITS = 4_300  # Python's int() limit (sys.get_int_max_str_digits) at its default

Reason = Literal["not_json", "too_deep", "too_large", "number_too_long"]

_LONG_NUMBER_RE = re.compile(rf"[0-9]{{{MAX_NUMBER_DIGITS + 1},}}")


class UnsafeJsonError(ValueError):
    """Text that is not JSON or is beyond a limit. ``line``/``column`` are 1-based (of the decoder's error,
    or of the bracket that went too deep); ``msg`` is a short English explanation."""

    def __init__(
        self,
        reason: Reason,
        msg: str,
        *,
        line: int = 1,
        column: int = 1,
        limit: int | None = None,
        value: int | None = None,
    ) -> None:
        what = f"not valid JSON: {msg}" if reason == "not_json" else msg
        super().__init__(f"{what} (line {line}, column {column})")
        self.reason: Reason = reason
        self.msg = msg
        self.line = line
        self.column = column
        self.limit = limit
        self.value = value


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def nesting_depth(text: str, stop_above: int | None = None) -> tuple[int, int]:
    """(deepest nesting of ``[``/``{`` outside string literals, index where it was reached).

    One pass, no recursion and no regex backtracking (an unterminated string cannot make it quadratic), so
    it is safe on any input; it stops early once the depth exceeds ``stop_above``.
    """
    depth = deepest = at = 0
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, i
                if stop_above is not None and deepest > stop_above:
                    break
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest, at


def loads(text: str, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> Any:
    """``json.loads`` with a size, nesting-depth and number-length limit; raises :class:`UnsafeJsonError`."""
    if len(text) > max_chars:
        raise UnsafeJsonError(
            "too_large",
            f"the text has {len(text):,} characters, more than the {max_chars:,} that are read",
            limit=max_chars,
            value=len(text),
        )
    depth, at = nesting_depth(text, stop_above=max_depth)
    if depth > max_depth:
        line, column = _position(text, at)
        raise UnsafeJsonError(
            "too_deep",
            f"brackets are nested more than {max_depth} levels deep",
            line=line,
            column=column,
            limit=max_depth,
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnsafeJsonError("not_json", exc.msg, line=exc.lineno, column=exc.colno) from exc
    except RecursionError as exc:  # not reachable within MAX_DEPTH; kept so no input can escape as a crash
        raise UnsafeJsonError("too_deep", "brackets are nested too deep", limit=max_depth) from exc
    except ValueError as exc:  # int()'s digit limit (sys.get_int_max_str_digits)
        digits = _LONG_NUMBER_RE.search(text)
        line, column = _position(text, digits.start()) if digits else (1, 1)
        raise UnsafeJsonError(
            "number_too_long",
            f"a number has more than {MAX_NUMBER_DIGITS:,} digits",
            line=line,
            column=column,
            limit=MAX_NUMBER_DIGITS,
        ) from exc
