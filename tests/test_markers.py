"""The collection hook of tests/conftest.py refuses a run that holds a test without a tier marker."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fast
pytest_plugins = ["pytester"]

INI = """
[pytest]
markers =
    fast: f
    real: r
    browser: b
    slow: s
"""
HOOK = "from tests.conftest import pytest_collection_modifyitems\n"
MARKED = "import pytest\npytestmark = pytest.mark.fast\n\ndef test_ok():\n    pass\n"
UNMARKED = "def test_forgot_its_tier():\n    pass\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makeconftest(HOOK)
    return pytester


def test_an_unmarked_module_is_a_usage_error(project: pytest.Pytester) -> None:
    """One unmarked module among marked ones: nothing runs, and the error names that module only."""
    project.makepyfile(test_marked=MARKED, test_unmarked=UNMARKED)
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*without a tier marker*test_unmarked.py*"])
    assert "test_marked.py" not in result.stderr.str()
    result.assert_outcomes()  # nothing passed: the run stopped at collection


def test_deselecting_by_marker_does_not_hide_an_unmarked_module(project: pytest.Pytester) -> None:
    """``-m fast`` would deselect the unmarked test silently; the hook runs first and still refuses."""
    project.makepyfile(test_marked=MARKED, test_unmarked=UNMARKED)
    result = project.runpytest("-m", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_unmarked.py*"])


def test_one_unmarked_test_in_a_marked_class_is_enough(project: pytest.Pytester) -> None:
    """Markers on a class or a function count; a module whose one test has neither is still named."""
    project.makepyfile(
        test_mixed="""
import pytest

@pytest.mark.slow
class TestSlow:
    def test_a(self):
        pass

@pytest.mark.real
def test_b():
    pass

def test_c():
    pass
"""
    )
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_mixed.py*"])


def test_marked_modules_run_normally(project: pytest.Pytester) -> None:
    """Module, class and function tier markers all satisfy the hook."""
    project.makepyfile(
        test_marked=MARKED,
        test_other="""
import pytest

@pytest.mark.browser
class TestPage:
    def test_a(self):
        pass

@pytest.mark.slow
def test_b():
    pass
""",
    )
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=3)
