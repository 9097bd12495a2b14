"""Finding pipelines from `FILE.py`, `module`, `FILE.py:name` or `module:name` targets."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from ..authoring.pipeline import Pipeline
from ..errors import StepstreamError


class LoadError(StepstreamError):
    """A target names no file, module, attribute or Pipeline; the message says what was expected."""


def _load_module(spec: str) -> ModuleType:
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_file():
            raise LoadError(f"no such file: {spec} (expected a Python file such as pipelines.py)")
        name = f"stepstream_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise LoadError(f"cannot import {spec}: not a Python source file")
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(path.resolve().parent))
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise LoadError(f"importing {spec} failed: {type(exc).__name__}: {exc}") from exc
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `module:pipeline` finds modules where the user stands
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise LoadError(
                f"no module named {spec!r} (expected FILE.py or an importable module)"
            ) from exc
        raise LoadError(f"importing {spec} failed: {exc}") from exc
    except Exception as exc:
        raise LoadError(f"importing {spec} failed: {type(exc).__name__}: {exc}") from exc


def load_pipelines(target: str) -> list[Pipeline]:
    """Every Pipeline a target names: one for `x:name`, all module-level ones otherwise."""
    module_part, _, attribute = target.partition(":")
    if len(module_part) == 1 and attribute[:1] in ("\\", "/"):  # a Windows drive letter
        drive_path, _, attribute = attribute.partition(":")
        module_part = f"{module_part}:{drive_path}"
    if not module_part:
        raise LoadError(
            f"{target!r} names no file or module; expected FILE.py:pipeline or module:pipeline"
        )
    module = _load_module(module_part)
    if attribute:
        try:
            found = getattr(module, attribute)
        except AttributeError:
            names = ", ".join(sorted(_pipelines_in(module))) or "none"
            raise LoadError(
                f"{module_part} has no attribute {attribute!r} (pipelines there: {names})"
            ) from None
        if not isinstance(found, Pipeline):
            raise LoadError(
                f"{target} is a {type(found).__name__}, not a Pipeline; "
                "expected an object made with stepstream.Pipeline(...)"
            )
        return [found]
    pipelines = list(_pipelines_in(module).values())
    if not pipelines:
        raise LoadError(f"{module_part} defines no Pipeline at module level")
    return pipelines


def load_pipeline(target: str) -> Pipeline:
    """Exactly one Pipeline; a module holding several must be narrowed with `:name`."""
    pipelines = load_pipelines(target)
    if len(pipelines) > 1:
        names = ", ".join(p.name for p in pipelines)
        raise LoadError(f"{target} holds several pipelines ({names}); pick one with {target}:NAME")
    return pipelines[0]


def _pipelines_in(module: ModuleType) -> dict[str, Pipeline]:
    return {name: value for name, value in vars(module).items() if isinstance(value, Pipeline)}
