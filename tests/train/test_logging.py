"""The run records shared by the trainer and Caffe-solver runs: the metrics window, the summary."""

from __future__ import annotations

import json
import math

from marginface.train.logging import MetricsWindow, format_summary, write_summary
from marginface.train.summary import RunSummary


def test_metrics_window_due_rate_and_mean():
    window = MetricsWindow(interval=2, total_steps=5)
    assert [s for s in range(1, 6) if window.due(s)] == [2, 4, 5]
    start = window._start
    window.add(10, 1.0)
    window.add(10, 3.0)
    rate, mean = window.take(start + 4.0)
    assert rate == 5.0 and mean == 2.0
    rate, mean = window.take(start + 5.0)
    assert rate == 0.0 and math.isnan(mean)


def test_run_summary_record_is_summary_json(tmp_path):
    summary = RunSummary(run_dir=str(tmp_path), steps=3, final_loss=1.5, seconds=2.0,
                         images_per_second=10.0, text="done")
    record = summary.to_dict()
    assert "text" not in record and "interrupted" not in record
    assert record["steps"] == 3 and list(record)[:2] == ["run_dir", "steps"]
    json.loads(write_summary(tmp_path, record).read_text())
    assert "final loss: 1.5000" in format_summary(record)
    assert RunSummary(steps=4, interrupted=True).text == ""
