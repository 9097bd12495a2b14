"""Where the CLI tests run from and how they find the `stepstream` console script."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = Path(__file__).resolve().parent / "pipelines"


def stepstream_command() -> list[str]:
    """The console script of the environment running the tests."""
    script = shutil.which("stepstream") or str(Path(sys.executable).with_name("stepstream"))
    assert Path(script).exists(), "the stepstream console script is not installed"
    return [script]
