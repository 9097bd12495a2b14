"""`POST /api/v1/events`: executions run elsewhere report here (the `http://` transport)."""

from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency

from stepstream import Engine, Receipt
from stepstream.transports import Gap
from stepstream.transports.wire import IngestAnswer, decode_batch

from ..dependencies import OffLoop
from ..problems import ProblemError, problem_spec

MAX_BATCH_BYTES = 16 * 1024 * 1024  # a worker's publisher sends at most 4 MiB per request


@post(
    "/events",
    status_code=200,
    summary="Receive events of executions run elsewhere",
    tags=["events"],
    request_max_body_size=MAX_BATCH_BYTES,
    responses={400: problem_spec("The body is not a batch of envelopes; `detail` says why")},
)
async def receive_events(
    request: Request, engine: NamedDependency[Engine], off_loop: NamedDependency[OffLoop]
) -> IngestAnswer:
    """Apply a batch in order, keep it, then answer; sending it again changes nothing.

    An execution this server misses events of (or never saw, without its record)
    is listed in `gaps` with the last seq it has; the sender sends the rest again.
    """
    try:
        envelopes = decode_batch(await request.body())
    except ValueError as exc:  # msgspec's DecodeError and ValidationError are ValueErrors
        raise ProblemError(400, f"the body is not a batch of events: {exc}") from None
    applied = duplicates = 0
    gaps: dict[str, Gap] = {}
    for envelope in envelopes:
        execution_id = envelope.event.execution_id
        if execution_id in gaps:
            continue  # after a gap, the rest of this execution waits for the refill
        try:
            receipt = engine.receive(envelope)
        except ValueError as exc:
            raise ProblemError(
                422, f"event {envelope.event.seq} of {execution_id}: {exc}"
            ) from None
        if receipt is Receipt.APPLIED:
            applied += 1
        elif receipt is Receipt.DUPLICATE:
            duplicates += 1
        else:
            known = engine.store.get(execution_id)
            gaps[execution_id] = Gap(execution_id, known.last_seq if known else 0)
    await off_loop(engine.flush)  # kept before the sender hears it was
    return IngestAnswer(applied=applied, duplicates=duplicates, gaps=list(gaps.values()))
