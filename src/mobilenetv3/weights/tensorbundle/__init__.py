"""Read TensorFlow checkpoints (TensorBundle V2: `.index` + `.data-NNNNN-of-NNNNN`) without TF.

The official MobileNet weights are only published as TF checkpoints; this package decodes them
with numpy alone so converting weights never requires installing TensorFlow. One module per
layer of the format: `codec` (masked crc32c, bounded Snappy), `table` (the LevelDB SSTable of
the `.index` file), `proto` (the BundleHeader/BundleEntry messages), `paths` (finding the
files), `reader` (`CheckpointReader`).
"""

from mobilenetv3.weights.errors import CheckpointError
from mobilenetv3.weights.tensorbundle.codec import mask_crc, unmask_crc
from mobilenetv3.weights.tensorbundle.paths import resolve_checkpoint_prefix
from mobilenetv3.weights.tensorbundle.proto import (
    BundleEntry,
    BundleHeader,
    iter_proto_fields,
    parse_entry,
    parse_header,
)
from mobilenetv3.weights.tensorbundle.reader import CheckpointReader, read_checkpoint
from mobilenetv3.weights.tensorbundle.table import iter_table

__all__ = [
    "BundleEntry",
    "BundleHeader",
    "CheckpointError",
    "CheckpointReader",
    "iter_proto_fields",
    "iter_table",
    "mask_crc",
    "parse_entry",
    "parse_header",
    "read_checkpoint",
    "resolve_checkpoint_prefix",
    "unmask_crc",
]
