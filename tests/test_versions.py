"""vitq.check.versions: what a manifest and a bench record about the tools that shaped the bytes."""

from __future__ import annotations

import platform
from importlib.metadata import version

from vitq import __version__
from vitq.check.versions import RECORDED_TOOLS, recorded_versions, tool_version


def test_every_recorded_tool_is_installed_and_recorded_with_its_version():
    recorded = recorded_versions()
    assert set(recorded) == {"python", *RECORDED_TOOLS, "vitq"}
    assert recorded["torch"] == version("torch") and recorded["vitq"] == __version__
    assert recorded["python"] == platform.python_version()
    assert "missing" not in recorded.values()


def test_a_tool_that_is_not_installed_is_recorded_as_missing():
    assert tool_version("no-such-distribution-vitq") == "missing"
