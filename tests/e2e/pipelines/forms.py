"""A pipeline whose inputs cover every kind of form field the dashboard generates."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from stepstream import Pipeline

greet = Pipeline("greet", description="repeats a name: every kind of input field")


@greet.step
def shape(
    name: str,
    times: Annotated[int, msgspec.Meta(ge=1, le=5)] = 2,
    shout: bool = False,
    ratio: float | None = None,
    mode: Literal["plain", "fancy"] = "plain",
) -> dict[str, str | float | None]:
    """The outputs echo what the form sent."""
    text = name.upper() if shout else name
    if mode == "fancy":
        text = f"*{text}*"
    return {"text": " ".join([text] * times), "ratio": ratio}
