"""Installing the test plugin for one test: a real distribution with an entry point, nowhere else.

It is copied into a folder with a `.dist-info` that declares its entry point, the
way pip lays out an installed distribution, so entry-point discovery finds it
only where a test puts that folder on `sys.path` or `PYTHONPATH`. The user's
environment never sees it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_PLUGIN = "stepstream_testplugin"
DIST_NAME = "stepstream-testplugin"
VERSION = "0.0.1"


def install_test_plugin(site: Path) -> Path:
    """Lay out the test plugin as an installed distribution in `site`; returns `site`."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(FIXTURES / TEST_PLUGIN, site / TEST_PLUGIN)
    dist_info = site / f"{TEST_PLUGIN}-{VERSION}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {VERSION}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[stepstream]\ntestplugin = {TEST_PLUGIN}\n")
    return site
