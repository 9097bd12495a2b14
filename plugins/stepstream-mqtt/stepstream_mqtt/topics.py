"""Where things go on the broker: one topic tree per prefix."""

from __future__ import annotations

import re

_NOT_A_LEVEL = re.compile(r"[/+#\0]")


def level(name: str) -> str:
    """A name as one topic level: MQTT's separator and wildcards become `_`."""
    return _NOT_A_LEVEL.sub("_", name) or "_"


class Topics:
    """The topics under `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.all_events = f"{prefix}/executions/+/events"

    def events(self, execution_id: str) -> str:
        """Every event of one execution, QoS 1, never retained."""
        return f"{self.prefix}/executions/{level(execution_id)}/events"

    def status(self, execution_id: str) -> str:
        """One execution's latest record, retained."""
        return f"{self.prefix}/executions/{level(execution_id)}/status"

    def pipeline_status(self, pipeline: str) -> str:
        """The latest record of any execution of a pipeline, retained: a fixed topic to watch."""
        return f"{self.prefix}/pipelines/{level(pipeline)}/status"
