"""Test set-up: 8 host CPU devices (as CI), float32 defaults, shared fixtures."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)


def pytest_addoption(parser):
    parser.addoption(
        "--exhaustive",
        action="store_true",
        help="run every row of the test table (tests/cases.py) in every cross-cutting test, not a sample",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Drops the ``exhaustive`` items unless ``--exhaustive``. (xdist runs each module on one worker,
    ``--dist loadfile``, so a module's shared programs compile once.)"""
    if not config.getoption("--exhaustive"):
        dropped = [item for item in items if item.get_closest_marker("exhaustive")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not item.get_closest_marker("exhaustive")]


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Tells the table (tests/cases.py) which rows the selected tests use, after -m / -k deselection."""
    import cases

    by_test: dict[str, set[str]] = {}
    for item in session.items:
        case = item.callspec.params.get("case") if hasattr(item, "callspec") else None
        if isinstance(case, cases.Case):
            by_test.setdefault(item.nodeid.split("[")[0].split("@")[0], set()).add(case.name)
    cases.SELECTED_BY_TEST = by_test
    cases.SELECTED = set().union(*by_test.values()) if by_test else set()
