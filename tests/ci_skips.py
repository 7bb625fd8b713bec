"""In CI a skip is a failure: a test that skips for a missing tool or package (espeak-ng, sox, Chromium,
xllamacpp, Piper, PostgreSQL, HAProxy ...) would otherwise let a run pass that never ran it.

When the environment variable ``CI`` is set (to anything but ``""``, ``0`` or ``false``; ``.ci/run`` sets
``CI=1``), every skip, at collection or in a test, is reported as a failure naming the skip's reason. The one
exception is a skip whose reason starts with ``NOT_IN_THIS_RUN``: a test that only makes sense next to another
test the run did not select (``-k``, ``-m``). Loaded by tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

NOT_IN_THIS_RUN = "not in this run:"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_in_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (report.skipped and in_ci() and not hasattr(report, "wasxfail")):
        return
    reason = _reason(report)
    if reason.startswith(NOT_IN_THIS_RUN):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI is set), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    _fail_in_ci(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, None]:
    outcome = yield
    _fail_in_ci(outcome.get_result())  # type: ignore[attr-defined]
