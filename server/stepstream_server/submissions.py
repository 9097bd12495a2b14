"""Starting executions so that none is lost and none runs twice.

`POST /api/v1/executions` records the execution `pending` (`Engine.create`), waits
until the store keeps it (`Engine.kept`: the store's writer says so, one commit for
every request waiting at the time) and only then queues it (`Engine.start`). So a
202 means the execution survives a crash, and an execution the store could not keep
never started: it is cancelled and the client is told it did not run.

A client that cannot tell whether its request arrived (a timeout, a dropped
connection) sends it again with the same `Idempotency-Key`: the execution created
with that key is answered again instead of a second one. Requests with one key are
handled one at a time (a lock per key, in this process; a store belongs to one
process), so two that race still make one execution.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from litestar.openapi.spec import OpenAPIType

from stepstream import (
    Engine,
    ExecutionFinished,
    ExecutionRecord,
    InputError,
    StepstreamError,
    StoreError,
)

from .dependencies import OffLoop
from .params import shown
from .problems import ProblemError, field_errors

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY}}}")  # printable ASCII, as Stripe takes
KEY_SCHEMA = {
    "one_of": None,
    "type": OpenAPIType.STRING,
    "min_length": 1,
    "max_length": MAX_KEY,
    "pattern": f"^[ -~]{{1,{MAX_KEY}}}$",
}


@dataclass(frozen=True)
class Submitted:
    """What `submit` did: the execution's record, and whether the key's earlier one answered."""

    record: ExecutionRecord
    replayed: bool = False


def check_key(values: list[str]) -> str | None:
    """The request's Idempotency-Key (None without one), or the 400 problem saying what is wrong."""
    if not values:
        return None
    if len(values) > 1:
        raise ProblemError(400, f"send one {IDEMPOTENCY_KEY} header, not {len(values)}")
    key = values[0]
    if not KEY.fullmatch(key):
        raise ProblemError(
            400,
            f"the {IDEMPOTENCY_KEY} header must be 1 to {MAX_KEY} printable ASCII characters "
            f"(a UUID is a good one); got {shown(key)}",
        )
    return key


class KeyLocks:
    """An anyio lock per idempotency key, kept only while a request holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (anyio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Submissions:
    """Creates, keeps, then starts executions for the API; see the module docstring."""

    def __init__(self, engine: Engine, off_loop: OffLoop) -> None:
        self.engine = engine
        self.off_loop = off_loop
        self.locks = KeyLocks()

    async def submit(
        self, pipeline: str, inputs: dict[str, Any] | None, key: str | None
    ) -> Submitted:
        """Start `pipeline` with `inputs`, once; raises the ProblemError to answer otherwise."""
        if key is None:
            return Submitted(await self._create_keep_start(pipeline, inputs, None))
        async with self.locks.hold(key):
            existing = await self.off_loop(self.engine.by_idempotency_key, key)
            if existing is None:
                return Submitted(await self._create_keep_start(pipeline, inputs, key))
            if not self._same_request(existing, pipeline, inputs):
                raise key_reused(key, existing)
            return Submitted(existing, replayed=True)

    async def _create_keep_start(
        self, pipeline: str, inputs: dict[str, Any] | None, key: str | None
    ) -> ExecutionRecord:
        engine = self.engine
        if pipeline not in engine.pipelines:
            raise unknown_pipeline(engine, pipeline)
        try:
            job = engine.create(pipeline, inputs, idempotency_key=key)
        except InputError as exc:
            raise invalid_inputs(engine, pipeline, exc) from None
        execution_id = job.execution_id
        try:
            # A 202 promises the execution exists, so it must survive a crash right after.
            await engine.kept()
        except StoreError as exc:
            self._cancel_unstarted(execution_id)
            raise not_stored(execution_id, exc, key) from None
        try:
            return engine.start(job)
        except ExecutionFinished:  # cancelled while the store kept it: it never starts
            return await self._read_back(execution_id)

    def _cancel_unstarted(self, execution_id: str) -> None:
        # Cancelled meanwhile (StepstreamError): it never started either way.
        with contextlib.suppress(StepstreamError):
            self.engine.cancel(execution_id)

    async def _read_back(self, execution_id: str) -> ExecutionRecord:
        with contextlib.suppress(StoreError):  # else the record as far as the store shows it
            await self.off_loop(self.engine.flush)
        return self.engine.get(execution_id)

    def _same_request(
        self, existing: ExecutionRecord, pipeline: str, inputs: dict[str, Any] | None
    ) -> bool:
        """Whether a request names the pipeline and inputs (defaults filled in) it was made with."""
        if existing.pipeline != pipeline or pipeline not in self.engine.pipelines:
            return False
        try:
            validated = self.engine.pipeline(pipeline).validate_inputs(inputs)
        except InputError:
            return False
        return _as_json(validated) == _as_json(existing.inputs)


def _as_json(value: Any) -> Any:
    """`value` as it reads back from JSON, so inputs compare as the store keeps them."""
    try:
        return msgspec.json.decode(msgspec.json.encode(value, enc_hook=str))
    except (TypeError, ValueError, OverflowError):
        return value


def unknown_pipeline(engine: Engine, name: str) -> ProblemError:
    """The 404 for a pipeline name nobody registered; it lists the names that exist."""
    known = ", ".join(sorted(engine.pipelines)) or "none registered"
    return ProblemError(
        404,
        f"no pipeline named {shown(name)} (known: {known})",
        type_="unknown-pipeline",
        title="Unknown pipeline",
        pipelines=sorted(engine.pipelines),
    )


def invalid_inputs(engine: Engine, pipeline: str, error: InputError) -> ProblemError:
    """The 422 listing the bad fields: the pipeline's own inputs first, at most MAX_FIELDS."""
    declared = engine.pipeline(pipeline).input_schema().get("properties", {})
    errors, more = field_errors(error.problems, first=declared)
    listed = f"; the first {len(errors)} are listed, … and {more} more" if more else ""
    return ProblemError(
        422,
        f"the inputs do not fit pipeline {pipeline!r}; see `errors` for each field{listed}",
        type_="invalid-inputs",
        title="Invalid inputs",
        errors=errors,
    )


def key_reused(key: str, existing: ExecutionRecord) -> ProblemError:
    """The 422 for a key sent again with another pipeline or other inputs."""
    return ProblemError(
        422,
        f"{IDEMPOTENCY_KEY} {shown(key)} was already used for execution "
        f"{existing.execution_id} (pipeline {existing.pipeline!r}) with other inputs or another "
        "pipeline; a key stands for one request: send a new key for a new request",
        type_="idempotency-key-reused",
        title="Idempotency key already used",
        execution_id=existing.execution_id,
        execution_status=existing.status,
    )


def not_stored(execution_id: str, error: StoreError, key: str | None) -> ProblemError:
    """The 503 for an execution the store could not keep: it never started, so nothing ran."""
    again = "submit it again once the store works"
    if key is not None:
        again += f", with a new {IDEMPOTENCY_KEY} (this one now names the cancelled execution)"
    return ProblemError(
        503,
        f"the store could not keep execution {execution_id} ({error}), so it was cancelled "
        f"before it started: it did not run; {again}",
        type_="store-unavailable",
        title="Store unavailable",
        execution_id=execution_id,
        execution_status="cancelled",
    )
