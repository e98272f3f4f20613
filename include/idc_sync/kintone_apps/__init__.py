"""Field definitions of the two kintone apps (permission sets, assignments).

Each JSON file is ``{"name", "description", "properties"}`` where ``properties`` is exactly the body
part of ``POST /k/v1/preview/app/form/fields.json``. The LOOKUP ``assignments.permission_set`` has an
empty ``lookup.relatedApp.app``: the permission sets app id is only known once that app exists, so
``kintone_setup`` (and the sandbox seed) fill it in. Kept as data, not code, so the setup command, the
sandbox and humans read the same definition.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any, Literal

AppName = Literal["permission_sets", "assignments"]
APP_KEYS: tuple[AppName, ...] = ("permission_sets", "assignments")


def load_app_definition(key: AppName, *, permission_sets_app_id: str | None = None) -> dict[str, Any]:
    """A fresh copy of one app's definition; fills the lookup's related app when its id is given."""
    text = resources.files(__name__).joinpath(f"{key}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    if permission_sets_app_id is not None:
        for prop in _all_properties(data["properties"]):
            lookup = prop.get("lookup")
            if lookup is not None:
                lookup["relatedApp"]["app"] = str(permission_sets_app_id)
    return copy.deepcopy(data)


def _all_properties(properties: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for prop in properties.values():
        out.append(prop)
        if prop.get("type") == "SUBTABLE":
            out.extend(_all_properties(prop.get("fields", {})))
    return out
