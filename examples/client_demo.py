"""The progress API's client patterns with `stepstream.client`, against a live `stepstream serve`.

The twin of `api_progress_query_demo.py`, which speaks the wire protocol with
requests and websocket libraries; here the client does that, and answers with
the framework's types. Start the server in one terminal, then pick a pattern:

    uv run stepstream serve
    uv run python examples/client_demo.py polling    # progress() and get() every second
    uv run python examples/client_demo.py websocket  # events(): typed events, resumed if dropped
    uv run python examples/client_demo.py multi      # several at once: AsyncClient + asyncio
    uv run python examples/client_demo.py richbar    # a rich bar fed by events()
    uv run python examples/client_demo.py            # all four, one after the other

Each pattern first starts an execution of the bundled `demo` pipeline with
`submit()`. The exit code is 0 when every execution completed, 1 otherwise, 2
when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.progress import Progress

from stepstream import (
    CancelledEvent,
    CompletedEvent,
    FailedEvent,
    ProgressEvent,
    ServerUnavailable,
)
from stepstream.client import AsyncClient, Client

DONE = {CompletedEvent: "completed", FailedEvent: "failed", CancelledEvent: "cancelled"}


def start(client: Client, inputs: dict[str, Any]) -> str:
    """Start the `demo` pipeline; returns the new execution's id."""
    record = client.submit("demo", **inputs)
    print(f"started {record.execution_id}")
    return record.execution_id


def rest_polling(client: Client, inputs: dict[str, Any], interval: float) -> str:
    """Progress every `interval` seconds until the execution has finished."""
    execution_id = start(client, inputs)
    while True:
        progress = client.progress(execution_id)  # None while it has none (pending)
        if progress is None:
            print("No progress yet (pending)")
        else:
            print(f"Progress: {progress.percentage:.1f}% ({progress.current_step_name})")
        record = client.get(execution_id)
        if record.finished:
            break
        time.sleep(interval)
    print(f"Done: {record.status}")
    return record.status


def websocket_stream(client: Client, inputs: dict[str, Any]) -> str:
    """Every event as it happens; the stream ends after the terminal one."""
    execution_id = start(client, inputs)
    status = "unknown"
    for event in client.events(execution_id):
        if isinstance(event, ProgressEvent):
            print(f"Progress: {event.progress.percentage:.1f}%")
        elif type(event) in DONE:
            status = DONE[type(event)]
            print(f"Done: {status}")
    return status


async def monitor(client: AsyncClient, execution_id: str) -> str:
    """Follow one execution with the async client until its terminal event."""
    async with client.events(execution_id) as events:
        async for event in events:
            progress = getattr(event, "progress", None)
            suffix = f" {progress.percentage:.1f}%" if progress is not None else ""
            kind = type(event).__struct_config__.tag  # the message's `type` on the wire
            print(f"[{execution_id}] {kind}{suffix}")
    return (await client.get(execution_id)).status


def monitor_multiple(url: str, token: str | None, inputs: dict[str, Any], count: int) -> list[str]:
    """Start `count` executions and follow them all at once with asyncio.gather."""

    async def main() -> list[str]:
        async with AsyncClient(url, token) as client:
            records = [await client.submit("demo", **inputs) for _ in range(count)]
            for record in records:
                print(f"started {record.execution_id}")
            return list(await asyncio.gather(*(monitor(client, r.execution_id) for r in records)))

    return asyncio.run(main())


def rich_progress_bar(client: Client, inputs: dict[str, Any]) -> str:
    """A rich progress bar fed by the events, labelled with the current step."""
    execution_id = start(client, inputs)
    with Progress() as bars:
        task = bars.add_task("Executing...", total=100)
        for event in client.events(execution_id):
            progress = getattr(event, "progress", None)
            if progress is not None:
                bars.update(
                    task,
                    completed=progress.percentage,
                    description=progress.current_step_name or "Executing...",
                )
    status = client.get(execution_id).status
    print(f"Done: {status}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the chosen pattern (or all of them); 0 when every execution completed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pattern",
        nargs="?",
        default="all",
        choices=["polling", "websocket", "multi", "richbar", "all"],
        help="which client pattern to run (default: all)",
    )
    parser.add_argument("--base-url", default="http://localhost:8000", help="the server's URL")
    parser.add_argument(
        "--token",
        default=os.environ.get("STEPSTREAM_TOKEN"),
        help="bearer token, if the server has one (default: $STEPSTREAM_TOKEN)",
    )
    parser.add_argument(
        "--seconds-per-step", type=float, default=0.5, help="the demo pipeline's pace (5 steps)"
    )
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--executions", type=int, default=3, help="how many the multi pattern runs")
    args = parser.parse_args(argv)

    inputs = {"seconds_per_step": args.seconds_per_step}
    with Client(args.base_url, args.token) as client:
        patterns: dict[str, Callable[[], str | list[str]]] = {
            "polling": lambda: rest_polling(client, inputs, args.poll_interval),
            "websocket": lambda: websocket_stream(client, inputs),
            "multi": lambda: monitor_multiple(args.base_url, args.token, inputs, args.executions),
            "richbar": lambda: rich_progress_bar(client, inputs),
        }
        chosen = list(patterns) if args.pattern == "all" else [args.pattern]
        outcomes: list[str] = []
        try:
            client.pipeline("demo")  # fails at once if the server is not there
            for name in chosen:
                print(f"--- {name} ---")
                result = patterns[name]()
                outcomes += result if isinstance(result, list) else [result]
        except ServerUnavailable as exc:
            print(f"{exc}; is `uv run stepstream serve` running?", file=sys.stderr)
            return 2
    return 0 if all(outcome == "completed" for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
