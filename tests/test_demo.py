"""`symrl demo` (the README's main job) and `symrl report` on its output, at a tiny budget."""

from __future__ import annotations

import subprocess
import sys

from symrl.demo import DEMO, run_demo


def test_demo_runs_reports_and_is_idempotent(tmp_path):
    out = tmp_path / "demo"
    summary, report = run_demo(out, workers=2, progress=False, steps=256)
    cells = 3 * 2 * DEMO["seeds"]
    assert summary.count("done") == cells and not summary.errors
    html = report.with_suffix(".html").read_text()
    assert report.is_file() and "SPPO vs the scaled-PPO control" in report.read_text() and "<img" in html

    again, _ = run_demo(out, workers=2, progress=False, steps=256)
    assert again.count("skipped") == cells

    printed = subprocess.run([sys.executable, "-m", "symrl.cli", "report", str(out), "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr[-2000:]
    rows = [line for line in printed.stdout.splitlines() if line.startswith("CartPole-v1")]
    assert len(rows) == 6 and all("seeds)" in row for row in rows)
    assert (tmp_path / "r" / "report.html").is_file()


def test_report_of_a_folder_without_runs_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "symrl.cli", "report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no symrl runs") and result.stderr.count("\n") == 1
