"""The root of the project's file errors, importable from every layer without a cycle.

`WeightsError` (a `ValueError`) is what any unusable weights file ends in, whatever its format:
the checkpoint readers (`weights.errors.CheckpointError`) and the TFLite reader
(`tflite.model.TFLiteError`) subclass it, so one `except WeightsError` catches them all.
"""

from __future__ import annotations


class WeightsError(ValueError):
    """The weights cannot be used as asked: says what is wrong and what to do."""
