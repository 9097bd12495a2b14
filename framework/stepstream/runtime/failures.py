"""What a failed step's record says, made from the exception it raised."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from ..model.events import ErrorInfo
from ..model.values import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS, clean_text

if TYPE_CHECKING:
    from ..authoring.pipeline import Step


def error_info(
    exc: BaseException, step: Step | None = None, attempts: int | None = None
) -> ErrorInfo:
    """The step's name, the exception type and message, the traceback, how often it was tried."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    return ErrorInfo(
        step=step.name if step is not None else None,
        type=type(exc).__qualname__,
        message=clean_text(message or type(exc).__qualname__, MAX_ERROR_CHARS),
        traceback=clean_text(
            "".join(traceback.format_exception(exc)), MAX_TRACEBACK_CHARS, keep_end=True
        ),
        attempts=attempts,
    )
