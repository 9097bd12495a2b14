"""The progress query API's client patterns, run against a live `stepstream serve`.

Start the server in one terminal, then pick a pattern in another:

    uv run stepstream serve
    uv run python examples/api_progress_query_demo.py polling    # REST polling with requests
    uv run python examples/api_progress_query_demo.py websocket  # WebSocket with websocket-client
    uv run python examples/api_progress_query_demo.py multi      # several at once: websockets
    uv run python examples/api_progress_query_demo.py richbar    # a rich bar fed by the WebSocket
    uv run python examples/api_progress_query_demo.py            # all four, one after the other

Each pattern first starts an execution of the bundled `demo` pipeline with
`POST /api/v1/executions`. The exit code is 0 when every execution completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import requests
import websockets
from rich.progress import Progress
from websocket import create_connection

TERMINAL = ("completed", "failed", "cancelled")


class Api:
    """Where the server is, how to authenticate, and how to start a `demo` execution."""

    def __init__(self, base_url: str, token: str | None, demo_inputs: dict[str, Any]) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_base = "ws" + self.base_url.removeprefix("http")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.demo_inputs = demo_inputs

    def get(self, path: str) -> requests.Response:
        """GET an API path with the token, if any."""
        return requests.get(f"{self.base_url}{path}", headers=self.headers, timeout=10)

    def start(self) -> str:
        """POST /api/v1/executions for the `demo` pipeline; returns the new execution's id."""
        response = requests.post(
            f"{self.base_url}/api/v1/executions",
            json={"pipeline": "demo", "inputs": self.demo_inputs},
            headers=self.headers,
            timeout=10,
        )
        if response.status_code != 202:
            sys.exit(f"could not start the demo pipeline: {response.status_code} {response.text}")
        execution_id = response.json()["execution_id"]
        print(f"started {execution_id} ({response.headers['Location']})")
        return execution_id

    def progress_ws(self, execution_id: str) -> str:
        """The URL of an execution's progress WebSocket."""
        return f"{self.ws_base}/api/v1/executions/{execution_id}/progress/ws"


def rest_polling(api: Api, interval: float) -> str:
    """The seed's REST polling loop: progress every `interval` seconds until the run ends."""
    execution_id = api.start()
    while True:
        response = api.get(f"/api/v1/executions/{execution_id}/progress")
        if response.status_code == 200:
            progress = response.json()
            print(f"Progress: {progress['percentage']:.1f}% ({progress['current_step_name']})")
        elif response.status_code == 204:
            print("No progress yet (pending)")
        # The seed stops on `!= 'running'`; a queued execution is `pending` first, so wait it out.
        status = api.get(f"/api/v1/executions/{execution_id}").json()
        if status["status"] not in ("pending", "running"):
            break
        time.sleep(interval)
    print(f"Done: {status['status']}")
    return status["status"]


def websocket_stream(api: Api) -> str:
    """The seed's websocket-client loop: print progress, stop at the terminal message."""
    execution_id = api.start()
    ws = create_connection(
        api.progress_ws(execution_id), header=[f"{k}: {v}" for k, v in api.headers.items()]
    )
    while True:
        data = json.loads(ws.recv())
        if data["type"] == "progress":
            print(f"Progress: {data['progress']['percentage']:.1f}%")
        elif data["type"] in TERMINAL:
            print(f"Done: {data['type']}")
            break
    ws.close()
    return data["type"]


async def monitor(api: Api, execution_id: str) -> str:
    """Follow one execution with `websockets` until its terminal message."""
    async with websockets.connect(
        api.progress_ws(execution_id), additional_headers=api.headers
    ) as ws:
        while True:
            data = json.loads(await ws.recv())
            percentage = (data.get("progress") or {}).get("percentage")
            suffix = f" {percentage:.1f}%" if percentage is not None else ""
            print(f"[{execution_id}] {data['type']}{suffix}")
            if data["type"] in TERMINAL:
                return data["type"]


def monitor_multiple(api: Api, count: int) -> list[str]:
    """Start `count` executions and follow them all at once with asyncio.gather."""
    execution_ids = [api.start() for _ in range(count)]

    async def main() -> list[str]:
        return await asyncio.gather(*(monitor(api, i) for i in execution_ids))

    return asyncio.run(main())


def rich_progress_bar(api: Api) -> str:
    """The seed's progress bar: rich, fed by the WebSocket, labelled with the current step."""
    execution_id = api.start()
    ws = create_connection(
        api.progress_ws(execution_id), header=[f"{k}: {v}" for k, v in api.headers.items()]
    )
    with Progress() as progress:
        task = progress.add_task("Executing...", total=100)
        while True:
            data = json.loads(ws.recv())
            snapshot = data.get("progress")
            if snapshot:
                progress.update(
                    task,
                    completed=snapshot["percentage"],
                    description=snapshot["current_step_name"] or "Executing...",
                )
            if data["type"] in TERMINAL:
                break
    ws.close()
    print(f"Done: {data['type']}")
    return data["type"]


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

    api = Api(args.base_url, args.token, {"seconds_per_step": args.seconds_per_step})
    patterns: dict[str, Callable[[], str | list[str]]] = {
        "polling": lambda: rest_polling(api, args.poll_interval),
        "websocket": lambda: websocket_stream(api),
        "multi": lambda: monitor_multiple(api, args.executions),
        "richbar": lambda: rich_progress_bar(api),
    }
    chosen = list(patterns) if args.pattern == "all" else [args.pattern]
    try:
        api.get("/health").raise_for_status()
    except requests.RequestException as exc:
        print(
            f"cannot reach {api.base_url} ({exc}); is `uv run stepstream serve` running?",
            file=sys.stderr,
        )
        return 2
    outcomes: list[str] = []
    for name in chosen:
        print(f"--- {name} ---")
        result = patterns[name]()
        outcomes += result if isinstance(result, list) else [result]
    return 0 if all(outcome == "completed" for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
