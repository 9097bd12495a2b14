"""Fixtures: a real receiver per test, and the signing secret in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from webhook_support import SECRET, Receiver


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """The signing secret, where the transport looks for it by default."""
    monkeypatch.setenv("STEPSTREAM_WEBHOOK_SECRET", SECRET)
    return SECRET
