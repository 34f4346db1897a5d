"""The suite itself: one test group per `Store` method, each run on every backend.

A method added to `Store` without a group of tests (a class named after it, e.g.
`TestClaimJob` for `claim_job`) fails here, so the suite stays worthy of the contract.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from provd.store import Store

from .conftest import BACKENDS
from .test_lifecycle import CALLS

BACKEND_FIXTURES = {"store", "open_store"}


def store_methods() -> list[str]:
    return sorted(
        name
        for name, value in vars(Store).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    )


def group_name(method: str) -> str:
    return "Test" + "".join(part.capitalize() for part in method.split("_"))


def collect_groups() -> dict[str, type]:
    """Every Test class of the suite's modules, by name."""
    groups: dict[str, type] = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        for name, value in vars(module).items():
            if name.startswith("Test") and inspect.isclass(value):
                assert name not in groups or groups[name] is value, f"two groups named {name}"
                groups[name] = value
    return groups


def cases_of(group: type) -> dict[str, object]:
    return {name: value for name, value in inspect.getmembers(group) if name.startswith("test_")}


def test_the_protocol_has_methods() -> None:
    """Guard the introspection below: it must see the protocol's methods."""
    assert {"claim_job", "release_job", "commit_quota"} <= set(store_methods())


def test_every_store_method_has_a_group() -> None:
    groups = collect_groups()
    missing = [group_name(m) for m in store_methods() if group_name(m) not in groups]
    assert missing == [], f"Store methods without a test group: {missing}"
    empty = [group_name(m) for m in store_methods() if not cases_of(groups[group_name(m)])]
    assert empty == [], f"test groups without tests: {empty}"


def test_every_test_runs_on_every_backend() -> None:
    """Each test of each group takes a store fixture, which is parametrized by backend."""
    assert {"sqlite", "memory"} <= set(BACKENDS)
    for group_name_, group in collect_groups().items():
        for name, test in cases_of(group).items():
            assert callable(test)
            params = set(inspect.signature(test).parameters)
            assert params & BACKEND_FIXTURES, f"{group_name_}.{name} uses no store"


def test_closed_store_calls_cover_every_method() -> None:
    assert sorted(CALLS) == store_methods()
