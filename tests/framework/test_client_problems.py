"""Problem details as the framework's exceptions, for the answers a test server cannot easily give.

The e2e tests (tests/e2e/test_client.py) cover every answer a running server gives
on demand; a 409 for an execution another process runs and a 503 from a broken
store need a shared or failing store, so their mapping is checked here on the
bodies the server sends (server/stepstream_server/problems.py).
"""

from __future__ import annotations

import httpx
import pytest

from stepstream import (
    ExecutionElsewhere,
    ExecutionFinished,
    InputError,
    ServerUnavailable,
    StoreError,
    UnknownExecution,
    UnknownPipeline,
)
from stepstream.client.problems import error_for

URL = "http://127.0.0.1:8000"


def problem(status: int, **body: object) -> httpx.Response:
    return httpx.Response(
        status,
        json={"status": status, **body},
        headers={"content-type": "application/problem+json"},
    )


def test_a_409_for_an_execution_run_elsewhere_is_execution_elsewhere() -> None:
    error = error_for(
        problem(
            409,
            type="execution-elsewhere",
            title="Execution runs elsewhere",
            detail="execution 'exec_1' is running but not run by this process",
            execution_id="exec_1",
            execution_status="running",
        ),
        URL,
        execution_id="exec_1",
    )
    assert isinstance(error, ExecutionElsewhere)
    assert (error.execution_id, error.status) == ("exec_1", "running")


def test_a_409_for_a_finished_execution_is_execution_finished() -> None:
    error = error_for(
        problem(409, type="execution-finished", execution_id="exec_2", execution_status="failed"),
        URL,
    )
    assert isinstance(error, ExecutionFinished) and error.status == "failed"


def test_a_503_is_a_store_error_with_the_servers_detail() -> None:
    detail = "execution exec_3 could not be stored (disk full), so it was cancelled"
    error = error_for(problem(503, type="store-unavailable", detail=detail), URL)
    assert isinstance(error, StoreError) and str(error) == detail


def test_lookups_and_inputs_take_what_the_request_was_about() -> None:
    missing = error_for(problem(404, type="unknown-execution", execution_id="exec_4"), URL)
    assert isinstance(missing, UnknownExecution) and missing.execution_id == "exec_4"
    unknown = error_for(
        problem(404, type="unknown-pipeline", pipelines=["a", "b"]), URL, pipeline="etl"
    )
    assert isinstance(unknown, UnknownPipeline) and isinstance(unknown, KeyError)
    assert str(unknown) == "no pipeline named 'etl' (known: a, b)"
    bad = error_for(
        problem(
            422,
            type="invalid-inputs",
            errors=[{"field": "rows", "message": "expected int, got string"}],
        ),
        URL,
        pipeline="etl",
    )
    assert isinstance(bad, InputError) and bad.problems == {"rows": "expected int, got string"}


@pytest.mark.parametrize(
    ("response", "status", "detail"),
    [
        (problem(401, detail="missing or invalid bearer token; send ..."), 401, "missing or"),
        (problem(500, detail="the server hit an unexpected error"), 500, "unexpected error"),
        (httpx.Response(502, text="Bad Gateway"), 502, "Bad Gateway"),
        (httpx.Response(404, text="<html>\n<h1>Not found</h1>\n</html>"), 404, "Not Found"),
    ],
)
def test_any_other_answer_is_server_unavailable_naming_url_status_and_detail(
    response: httpx.Response, status: int, detail: str
) -> None:
    error = error_for(response, URL)
    assert isinstance(error, ServerUnavailable)
    assert error.status == status and error.url == URL and detail in error.detail
    assert str(error).startswith(f"the stepstream server at {URL} answered {status}: ")
