"""Fixtures of the unit tests: the sso-admin fake, its clock and apply options on that clock."""

from __future__ import annotations

import random

import pytest

from idc_sync.apply import ApplyOptions
from tests.unit.fakes import FakeSso, FakeTime


@pytest.fixture
def fake() -> FakeSso:
    return FakeSso()


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def opts(ft: FakeTime) -> ApplyOptions:
    return ApplyOptions(sleep=ft.sleep, clock=ft.clock, rng=random.Random(1), max_attempts=5)
