"""The one error family of the weights readers: every bad weights file ends in a subclass.

Callers catch `WeightsError` (a `ValueError`) for any format; the per-format subclasses say
which reader refused the file. Every message names the file, the part of it that is wrong and,
where there is one, what to do.
"""

from __future__ import annotations

from mobilenetv3.errors import WeightsError

__all__ = ["CheckpointError", "WeightsError"]


class CheckpointError(WeightsError):
    """Unreadable TF checkpoint or release archive; the message says what is wrong and what to
    do."""
