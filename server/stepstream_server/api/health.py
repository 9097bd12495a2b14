"""`/health` (liveness) and `/health/ready` (readiness), for load balancers and process managers.

Both are public, for GET and HEAD alike: a probe never needs the token.
"""

from __future__ import annotations

from litestar import route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod

from stepstream import Engine, StoreError

from ..dependencies import OffLoop
from ..problems import ProblemError, problem_spec
from ..schemas import Health

PROBES = [HttpMethod.GET, HttpMethod.HEAD]  # the server sends no body to a HEAD


@route("/health", http_method=PROBES, summary="Liveness", tags=["health"], opt={"public": True})
async def health() -> Health:
    """Answers while the process runs, whatever its store does; never needs a token."""
    return Health()


@route(
    "/health/ready",
    http_method=PROBES,
    summary="Readiness",
    tags=["health"],
    opt={"public": True},
    responses={503: problem_spec("The store cannot write; `detail` says why")},
)
async def ready(engine: NamedDependency[Engine], off_loop: NamedDependency[OffLoop]) -> Health:
    """200 while the store keeps what the server records, 503 while it cannot (a full disk).

    It waits for the store to write what is queued, off the event loop: a store whose
    writer fails has its failed writes still queued, so this fails with it.
    """
    try:
        await off_loop(engine.flush)
    except StoreError as exc:
        raise ProblemError(
            503,
            f"the store cannot write ({exc}); executions cannot be started or kept until it can",
            type_="store-unavailable",
            title="Store unavailable",
        ) from None
    return Health(status="ready")
