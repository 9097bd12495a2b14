"""Running executions: the engine (the public facade), its queue, the runner, recovery."""
