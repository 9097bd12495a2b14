"""Defaults the engine applies and the commands show in `--help`, importable without the runtime."""

DEFAULT_CANCEL_GRACE = 30.0  # seconds a cancelled sync step has to reach a Progress call
DEFAULT_LOG_LINES = 1000  # captured lines kept per execution
DEFAULT_MAX_OUTPUT_BYTES = 1_048_576  # outputs over this are replaced by a marker
DEFAULT_PROGRESS_INTERVAL = 0.05  # seconds between progress events of a running step
