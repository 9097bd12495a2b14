"""The layout holds: no import cycle in the framework, no server in it, no private names outside.

Imports are read from the source, lazy ones (inside functions) included; only
those under `if TYPE_CHECKING:` are left out, since they never run. The implicit
import of a module's parent package is not an edge (every tool that draws import
graphs leaves it out), so a framework module importing `stepstream` itself is
one, and a cycle, as `stepstream/__init__` imports the public API.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from stepstream.plugins import DEFAULT_PLUGINS

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = ROOT / "framework"
PACKAGE = "stepstream"
OUTSIDE = [ROOT / "server", *sorted((ROOT / "plugins").glob("*/"))]
FORBIDDEN_IN_FRAMEWORK = ("litestar", "uvicorn", "stepstream_server")


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(base: Path, package: str) -> dict[str, Path]:
    return {_module_name(p, base): p for p in sorted((base / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, list[str]]]:
    """(imported module, names taken from it) for each import in one module's source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        names = [alias.name for alias in node.names]
        submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
        yield from ((m, []) for m in submodules)
        rest = [n for n in names if f"{base}.{n}" not in known]
        if rest or not submodules:
            yield base, rest


def _graph() -> dict[str, set[str]]:
    modules = _modules(FRAMEWORK, PACKAGE)
    known = set(modules)
    return {
        name: {target for target, _ in _imports(name, path, known) if target in known}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_framework_has_no_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 30, "the walk found too few modules to mean anything"
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_when_there_is_one() -> None:
    graph = _graph()
    graph["stepstream.model.events"].add("stepstream.runtime.engine")
    cycles = _cycles(graph)
    assert any({"stepstream.model.events", "stepstream.runtime.engine"} <= set(c) for c in cycles)


def test_the_framework_never_imports_the_server_or_its_libraries() -> None:
    modules = _modules(FRAMEWORK, PACKAGE)
    offending = [
        (name, target)
        for name, path in modules.items()
        for target, _ in _imports(name, path, set(modules))
        if target.split(".")[0] in FORBIDDEN_IN_FRAMEWORK
    ]
    assert offending == []


def test_built_in_plugins_import_the_hook_markers_not_the_manager_that_loads_them() -> None:
    graph = _graph()
    for name in DEFAULT_PLUGINS.values():
        assert "stepstream.plugins" not in graph[name], name


def test_the_server_and_plugins_use_only_public_names_of_the_framework() -> None:
    framework = _modules(FRAMEWORK, PACKAGE)
    private = []
    for base in OUTSIDE:
        for package_dir in [p for p in base.iterdir() if (p / "__init__.py").exists()]:
            modules = _modules(base, package_dir.name)
            for name, path in modules.items():
                for target, names in _imports(name, path, set(modules) | set(framework)):
                    if target.split(".")[0] != PACKAGE:
                        continue
                    hidden = [p for p in target.split(".") if p.startswith("_")]
                    hidden += [n for n in names if n.startswith("_")]
                    if hidden:
                        private.append((name, target, hidden))
    assert private == []


def test_importing_stepstream_does_not_import_the_http_client_libraries() -> None:
    """The client's httpx and httpx-ws load with `stepstream.client`, not with the framework:
    a worker that only runs pipelines never pays for them."""
    code = (
        "import sys, stepstream\n"
        "from stepstream.plugins import make_plugin_manager\n"
        "import stepstream.cli.main\n"
        "make_plugin_manager(load_entrypoints=False)\n"
        "assert not {'httpx', 'httpx_ws'} & set(sys.modules), sorted(sys.modules)\n"
        "assert stepstream.Client.__module__ == 'stepstream.client.sync'\n"
        "assert 'httpx' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
