"""tests/ci_skips.py: with CI set, a test that skips for a missing tool fails the run (in a test, through a
skipif marker, and at module level); without CI it is a skip; a "not in this run" skip stays a skip."""

from __future__ import annotations

import pytest

from backend.config import REPO_ROOT

pytestmark = pytest.mark.fast
pytest_plugins = ["pytester"]

PLANTED = """
import shutil
import pytest

TOOL = "claritymentor-no-such-tool"

def test_needs_the_tool():
    if shutil.which(TOOL) is None:
        pytest.skip(f"{TOOL} is not installed")

@pytest.mark.skipif(shutil.which(TOOL) is None, reason="the tool is not installed")
def test_marked():
    pass

def test_only_next_to_another():
    pytest.skip("not in this run: the other test was deselected")
"""
MODULE_LEVEL = """
import pytest
pytest.skip("Chromium is not installed", allow_module_level=True)

def test_in_a_browser():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the subprocess imports tests.ci_skips
    pytester.makeconftest('pytest_plugins = ("tests.ci_skips",)\n')
    pytester.makepyfile(test_planted=PLANTED, test_browser=MODULE_LEVEL)
    return pytester


def test_in_ci_a_missing_tool_fails_the_run(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=1: both missing-tool tests fail (exit status 1), naming the reason, and the "not in this run" skip is
    still a skip; a module-level skip is a collection error (the run stops, exit status 2)."""
    monkeypatch.setenv("CI", "1")
    result = project.runpytest_subprocess("test_planted.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, errors=1, skipped=1)  # a skipif marker skips in setup: an error
    result.stdout.fnmatch_lines(["*skipped in CI*claritymentor-no-such-tool is not installed*"])
    result = project.runpytest_subprocess("test_browser.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*skipped in CI*Chromium is not installed*"])


def test_without_ci_a_missing_tool_is_a_skip(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI unset (or CI=false): the same tests are skips and the run passes."""
    monkeypatch.setenv("CI", "false")
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=4)
