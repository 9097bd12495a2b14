"""A pipeline file that fails while being imported."""

from __future__ import annotations

raise RuntimeError("this module cannot be imported")
