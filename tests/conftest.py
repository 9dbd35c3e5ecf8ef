from __future__ import annotations

from pathlib import Path

import pytest

from mobilenetv3.reference import ENV_VAR, shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    """The `../shared` reference folder; tests needing it skip, saying why, only where absent."""
    path = shared_dir()
    if path is None:
        pytest.skip(f"reference data not found: put ../shared beside the checkout or set {ENV_VAR}")
    return path
