"""`symrl demo` (the README's main job) and `symrl report` on its output, at a tiny budget."""

from __future__ import annotations

import subprocess
import sys

from symrl.demo import DEMO, run_demo


def test_demo_runs_reports_and_is_idempotent(tmp_path):
    out = tmp_path / "demo"
    summary, report = run_demo(out, workers=2, progress=False, steps=256)
    cells = 4 * 2 * DEMO["seeds"]
    assert summary.count("done") == cells and not summary.errors
    html = report.with_suffix(".html").read_text()
    markdown = report.read_text()
    assert report.is_file() and "SPPO vs the scaled-PPO control" in markdown and "<img" in html
    robustness = markdown.split("## Robustness to reward noise\n", 1)[1].split("\n## ", 1)[0]
    # both SPPO variants against scaled PPO, both comparisons, on the demo's one task
    for variant in ("SPPO", "SPPO unmasked"):
        for comparison in ("noisy difference", "difference in differences"):
            assert f"| CartPole-v1 | {variant} | scaled PPO | gaussian:4.0 | {comparison} |" in robustness

    again, _ = run_demo(out, workers=2, progress=False, steps=256)
    assert again.count("skipped") == cells

    printed = subprocess.run([sys.executable, "-m", "symrl.cli", "report", str(out), "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr[-2000:]
    rows = [line for line in printed.stdout.splitlines() if line.startswith("CartPole-v1")]
    assert len(rows) == 8 and all("seeds)" in row for row in rows)
    verdicts = [line for line in printed.stdout.splitlines()
                if line.split(":")[0] in ("helps", "no useful effect", "inconclusive")]
    assert len(verdicts) == 4 and any("SPPO unmasked vs scaled PPO, difference in differences" in line for line in verdicts)
    assert any(line.startswith("noise gaussian:4.0") and "PPO on CartPole-v1" in line for line in printed.stdout.splitlines())
    assert (tmp_path / "r" / "report.html").is_file()


def test_report_of_a_folder_without_runs_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "symrl.cli", "report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no symrl runs") and result.stderr.count("\n") == 1


def test_report_flags_refuse_bad_values_in_one_line(tmp_path, capsys):
    from symrl.cli import main

    for flag, value, message in (("--score-fraction", "0", "must be in (0, 1]"), ("--score-fraction", "x", "is not a number"),
                                 ("--margin", "-1", "must be >= 0")):
        code = main(["report", str(tmp_path), flag, value])
        stderr = capsys.readouterr().err
        assert code == 2 and message in stderr, (flag, value, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith("error:"), stderr
