"""Shared fixtures: every async test runs on asyncio, the loop the server uses."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
