"""Defaults the engine applies and the commands show in `--help`, importable without the runtime."""

DEFAULT_CANCEL_GRACE = 30.0  # seconds a cancelled sync step has to reach a Progress call
DEFAULT_LOG_LINES = 1000  # captured lines kept per execution
