"""Helpers for tests that drive the server: the test pipelines and an engine that has them.

The server tests and the end-to-end tests of its WebSockets share them, so both
hold executions open with the same gates.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from stepstream import Engine
from stepstream.stores import ExecutionStore
from stepstream_server.demo import DEMO_PIPELINES

from cli_support import ROOT

PIPELINES_FILE = ROOT / "tests" / "server" / "pipelines.py"


def _load_test_pipelines() -> ModuleType:
    """Import tests/server/pipelines.py once, so tests and executions share its gates."""
    name = "stepstream_server_test_pipelines"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PIPELINES_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


test_pipelines = _load_test_pipelines()
TEST_PIPELINES = [
    test_pipelines.quick,
    test_pipelines.held,
    test_pipelines.held_async,
    test_pipelines.failing,
    test_pipelines.chatty,
]


def make_engine(
    *, store: ExecutionStore | None = None, max_concurrent: int | None = None
) -> Engine:
    """An engine on `store` (default memory) with the demos, the test pipelines, 20 ms progress."""
    engine = Engine(
        store=store,
        load_entrypoints=False,
        max_concurrent=max_concurrent,
        progress_interval=0.02,
    )
    for pipeline in [*DEMO_PIPELINES, *TEST_PIPELINES]:
        engine.add_pipeline(pipeline)
    return engine
