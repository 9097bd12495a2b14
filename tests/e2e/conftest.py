"""Drive the `stepstream` console script as a user would: a subprocess from the repository root."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from cli_support import ROOT, stepstream_command


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `stepstream ARGS...` to completion from the repository root."""

    def run(
        *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*stepstream_command(), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run
