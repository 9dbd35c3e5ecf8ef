"""Where the reference data (`../shared`: slim outputs, official weights, photos) lives.

Tests (the `shared` fixture) and benchmarks (`_common.shared_dir`) find it through
`shared_dir()` only, so one environment variable, `MOBILENETV3_SHARED`, points all of them
elsewhere. Only they use it: it lives beside the tests, not in the package.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MOBILENETV3_SHARED"


def shared_dir() -> Path | None:
    """The reference folder, or None where this checkout has none beside it."""
    override = os.environ.get(ENV_VAR)
    candidates = [Path(override)] if override else []
    repo_root = Path(__file__).resolve().parents[1]
    candidates += [repo_root.parent / "shared", Path.cwd().parent / "shared"]
    return next((p for p in candidates if (p / "README.md").is_file()), None)
