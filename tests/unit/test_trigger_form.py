"""The idc_sync trigger form: optional fields can be left empty, fields are grouped in sections, the
dangerous one stands apart, and the defaults (what scheduled and webhook runs use) validate."""

from __future__ import annotations

import importlib.util
import sys

from tests.unit.test_approvers import REPO

OPTIONAL = {"scope_accounts", "scope_permission_sets", "adopt_permission_sets"}


def _dag():
    spec = importlib.util.spec_from_file_location("idc_sync_dag_under_test", REPO / "dags/idc_sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module.idc_sync()


def test_optional_fields_are_nullable_and_empty_by_default() -> None:
    params = _dag().params
    for name in OPTIONAL:
        schema = params.get_param(name).schema
        assert schema["type"] == ["null", "array"], name
        assert params[name] is None, name


def test_switches_are_nullable_so_only_the_drift_choice_is_marked_required() -> None:
    """The form marks a field required unless its type admits null; a switch always has a value."""
    params = _dag().params
    required = {n for n in params if "null" not in params.get_param(n).schema["type"]}
    assert required == {"drift_mode"}
    switches = {n for n in params if "boolean" in params.get_param(n).schema["type"]}
    assert switches == {"dry_run", "allow_mass_delete", "full_resync", "skip_scim_check"}
    assert all(params[n] is False for n in switches)


def test_fields_are_grouped_and_the_dangerous_one_stands_alone() -> None:
    params = _dag().params
    sections: dict[str, set[str]] = {}
    for name in params:
        sections.setdefault(params.get_param(name).schema["section"], set()).add(name)
    assert sections == {
        "Safety": {"dry_run", "drift_mode"},
        "Scope": {"scope_accounts", "scope_permission_sets"},
        "Dangerous: skips a safety check": {"allow_mass_delete"},
        "Advanced": {"full_resync", "adopt_permission_sets", "skip_scim_check"},
    }
    assert "deletion guard" in params.get_param("allow_mass_delete").schema["description_md"]


def test_the_defaults_validate_and_mean_a_full_enforcing_run() -> None:
    from idc_sync_airflow.steps import _scope

    values = _dag().params.validate()
    assert values["dry_run"] is False and values["allow_mass_delete"] is False
    assert values["drift_mode"] == "enforce"
    assert _scope(values).is_full
    assert _scope({**values, "scope_accounts": ["123456789012", " "]}).accounts == ["123456789012"]
