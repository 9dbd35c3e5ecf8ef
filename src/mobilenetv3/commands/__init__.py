"""The CLI commands, one module each (see `mobilenetv3.cli`)."""
