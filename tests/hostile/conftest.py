"""The hostile-input suite: every test carries ``@pytest.mark.fault(kind=..., fault=...,
behaviour=...)``, and ``benchmarks/reliability_table.py`` turns the suite's run into
docs/reliability.md (input kind x fault x behaviour, with each case's outcome).

With ``MARGINFACE_RELIABILITY_JSON=PATH`` set, the run writes one record per case to PATH.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_RECORDS: list[dict[str, str]] = []


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and item.get_closest_marker("fault") is None:
            raise pytest.UsageError(f"{item.nodeid}: a hostile-input test needs "
                                    "@pytest.mark.fault(kind=..., fault=..., behaviour=...)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is None or not os.environ.get("MARGINFACE_RELIABILITY_JSON"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _RECORDS.append({"test": item.nodeid, "outcome": report.outcome,
                         **{k: str(v) for k, v in marker.kwargs.items()}})


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MARGINFACE_RELIABILITY_JSON")
    if path and _RECORDS:
        Path(path).write_text(json.dumps(_RECORDS, indent=1) + "\n")
