"""`/health`: liveness, for load balancers and process managers."""

from __future__ import annotations

from litestar import get

from ..schemas import Health


@get("/health", summary="Liveness", tags=["health"], opt={"public": True})
async def health() -> Health:
    """Answers while the process runs; never needs a token."""
    return Health()
