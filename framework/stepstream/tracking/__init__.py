"""Keeping track of executions: the recorder, estimates, history, subscriptions and fan-out."""
