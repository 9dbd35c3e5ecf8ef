from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from shared_data import ENV_VAR, shared_dir

# CI sets CI=true: there the reference data and every optional engine must be present, so a
# skip (missing ../shared, a failed import of ai_edge_litert or matplotlib) is a failure.
STRICT = os.environ.get("CI", "").lower() == "true"


# Test files of an optional extra (not in [all]): where the extra is not installed they are
# not collected, said in the summary; .ci/run's step 3 installs [openvino] and runs its tests.
EXTRA_TESTS = {"test_executorch.py": "executorch", "test_openvino.py": "openvino"}


def _missing_extra(name: str) -> str | None:
    extra = EXTRA_TESTS.get(name)
    return extra if extra is not None and importlib.util.find_spec(extra) is None else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return True if _missing_extra(collection_path.name) else None


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    for name in EXTRA_TESTS:
        if extra := _missing_extra(name):
            terminalreporter.write_line(f"not collected: {name} (the [{extra}] extra is not "
                                        "installed)")  # fmt: skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    yield from _fail_skips_in_ci()


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    yield from _fail_skips_in_ci()


def _fail_skips_in_ci():  # noqa: ANN202 - a hook wrapper's generator
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be missing: {reason}"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The `../shared` reference folder; tests needing it skip, saying why, only where absent
    (and fail under CI=true)."""
    path = shared_dir()
    if path is None:
        pytest.skip(f"reference data not found: put ../shared beside the checkout or set {ENV_VAR}")
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test, the previous count restored after it, pass or fail."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist every worker is one process per core: more torch threads than cores make
    OpenMP spin against the other worker (measured 5-10x slower on 2 cores)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
