"""Registers `stepstream serve`."""
