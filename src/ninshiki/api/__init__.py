"""The Python API that the CLI calls: one module per command."""
