"""Shared fixtures: every async test runs on asyncio, the loop the server uses."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from plugin_support import TEST_PLUGIN, install_test_plugin


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def test_plugin_site(tmp_path: Path) -> Path:
    """A folder holding the test plugin as an installed distribution, for PYTHONPATH."""
    return install_test_plugin(tmp_path / "site")


@pytest.fixture
def test_plugin(test_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The test plugin, installed for this test only: entry-point discovery finds it."""
    monkeypatch.syspath_prepend(str(test_plugin_site))
    yield importlib.import_module(TEST_PLUGIN)
    sys.modules.pop(TEST_PLUGIN, None)
