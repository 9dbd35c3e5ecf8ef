from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from shared_data import ENV_VAR, shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    """The `../shared` reference folder; tests needing it skip, saying why, only where absent."""
    path = shared_dir()
    if path is None:
        pytest.skip(f"reference data not found: put ../shared beside the checkout or set {ENV_VAR}")
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist every worker is one process per core: more torch threads than cores make
    OpenMP spin against the other worker (measured 5-10x slower on 2 cores)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
