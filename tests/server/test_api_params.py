"""URL parameters: strict decimal numbers within what the store holds, cursors that are ids.

`?after=` means the same on REST and on the WebSocket; a number that SQLite cannot
compare (2**63) used to be a 500, and `1e3` or `1_0` were taken on one side only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stepstream.stores.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

MAX_SEQ = 2**63 - 1
NOT_A_SEQ = [
    str(MAX_SEQ + 1),  # SQLite's OverflowError: a 500 before
    "1e3",  # Litestar's number parsing took it
    "1_0",  # Python's int() takes it
    "-1",
    "+1",
    " 1",
    "0x10",
    "1.0",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() takes it
    "",
    "9" * 5000,
]


@pytest.fixture
async def sqlite_server(
    start_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> AsyncIterator[Any]:
    store = SqliteStore(tmp_path / "params.db")
    try:
        yield await start_server(store=store)
    finally:
        store.close()


@pytest.fixture
async def finished_id(sqlite_server: Any) -> str:
    return (await sqlite_server.finished("quick", items=1))["execution_id"]


@pytest.mark.parametrize("after", NOT_A_SEQ)
async def test_rest_after_must_be_decimal_digits_within_range(
    sqlite_server: Any, finished_id: str, after: str
) -> None:
    response = await sqlite_server.http.get(
        f"/api/v1/executions/{finished_id}/events", params={"after": after}
    )
    problem = sqlite_server.problem(response, 400)
    assert "'after' must be a whole number from 0 to 9223372036854775807" in problem["detail"]
    assert len(problem["detail"]) < 300, "a long bad value is cut, not echoed whole"


@pytest.mark.parametrize("after", ["1e3", "1_0", str(MAX_SEQ + 1), "-1"])
async def test_websocket_after_is_parsed_like_rest(
    sqlite_server: Any, finished_id: str, after: str
) -> None:
    async with sqlite_server.progress_ws(finished_id, f"?after={after}") as ws:
        messages, code = await sqlite_server.read_to_close(ws)
    assert code == 4400
    assert [m["type"] for m in messages] == ["error"]
    assert "'after' must be a whole number from 0 to" in messages[0]["message"]


async def test_the_largest_seq_is_accepted_on_both(sqlite_server: Any, finished_id: str) -> None:
    response = await sqlite_server.http.get(
        f"/api/v1/executions/{finished_id}/events", params={"after": str(MAX_SEQ)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["events"] == []
    leading_zeros = await sqlite_server.http.get(
        f"/api/v1/executions/{finished_id}/events", params={"after": "0002"}
    )
    assert all(e["seq"] > 2 for e in leading_zeros.json()["events"])
    async with sqlite_server.progress_ws(finished_id, f"?after={MAX_SEQ}") as ws:
        messages, code = await sqlite_server.read_to_close(ws)
    assert code == 1000 and messages[0]["type"] == "status"


@pytest.mark.parametrize("limit", ["0", "201", "1e1", "1_0", "-5", "9" * 30, ""])
async def test_limit_must_be_1_to_200_in_decimal_digits(sqlite_server: Any, limit: str) -> None:
    response = await sqlite_server.http.get("/api/v1/executions", params={"limit": limit})
    problem = sqlite_server.problem(response, 400)
    assert "'limit' must be a whole number from 1 to 200" in problem["detail"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        "exec_",
        "exec_01m8r3jfx25ss9e66mv050ykdx",  # lower case
        "exec_01M8R3JFX25SS9E66MV050YKDXX",  # 27 characters
        "exec_01M8R3JFX25SS9E66MV050YKDU",  # U is not Crockford base32
        "' OR 1=1 --",
    ],
)
async def test_a_cursor_that_is_no_execution_id_is_400_not_page_one(
    sqlite_server: Any, cursor: str
) -> None:
    await sqlite_server.finished("quick", items=1)
    response = await sqlite_server.http.get("/api/v1/executions", params={"cursor": cursor})
    problem = sqlite_server.problem(response, 400)
    assert "'cursor' must be the `next_cursor` of a previous page" in problem["detail"]


async def test_a_well_formed_cursor_pages(sqlite_server: Any) -> None:
    for _ in range(3):
        await sqlite_server.finished("quick", items=1)
    first = (await sqlite_server.http.get("/api/v1/executions", params={"limit": "2"})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await sqlite_server.http.get(
        "/api/v1/executions", params={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert rest.status_code == 200
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
