"""What a requester reads about a :class:`~idc_sync.model.Problem`, in their language.

``Problem.message`` is English and written where the problem is found; the people reading kintone
comments mostly read Japanese. The texts and params of every code are in :mod:`idc_sync.problems`. When
a problem's params do not fit its code's model (a producer changed, a problem stored by an older version)
the English message is used: a requester always reads a useful sentence, never a crash or a ``{name}``.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from idc_sync.model import Problem
from idc_sync.problems import LANGUAGES, REGISTRY, Params, placeholders
from idc_sync.sanitize import visible

log = logging.getLogger(__name__)


class _Placeholders(dict[str, object]):
    """``str.format_map``'s view of the params: their fields and fragments; ``None`` counts as missing."""

    def __init__(self, params: Params) -> None:
        super().__init__()
        self._params = params

    def __missing__(self, key: str) -> object:
        value = getattr(self._params, key) if key in placeholders(type(self._params)) else None
        if value is None:
            raise KeyError(key)
        return value


def render_problem(problem: Problem, language: str) -> str:
    """The problem in ``language`` ("ja" or "en"); the English ``message`` when no template fits. Shown
    with its invisible characters made visible and bounded (``sanitize.visible``)."""
    return visible(_render(problem, language))


def _render(problem: Problem, language: str) -> str:
    spec = REGISTRY.get(problem.code)  # type: ignore[call-overload]  # a str, registered when built
    if spec is None or language not in LANGUAGES:
        return problem.message
    try:
        params = spec.parse(problem.params)
    except ValidationError as exc:
        where = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors())
        log.warning(
            "%s problem: its params do not fit (%s); the English message is used", problem.code, where
        )
        return problem.message
    template = spec.template(language, problem.severity, params.variant)
    try:
        return template.format_map(_Placeholders(params)).strip()
    except (KeyError, IndexError, ValueError):
        return problem.message
