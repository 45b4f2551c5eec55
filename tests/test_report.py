"""symrl.report on a synthetic study (run directories written by hand, no training): the files, the HTML,
the figures, the numbers shared by summary_table, Markdown and HTML, the bold rule and the SPPO vs
scaled-PPO section.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml

from symrl import report, results, stats
from symrl.errors import SymrlError

ENVS = ["CartPole-v1", "PongNoFrameskip-v4"]
NOISES = ["clean", "gaussian:0.1"]
SEEDS = [0, 1, 2]
ALGORITHMS = {  # label: config of the run
    "PPO": {"algo": "ppo", "alpha": 1.0, "beta": 0.0, "z": -1.0, "policy_coef": 1.0},
    "SPPO": {"algo": "sppo", "alpha": 0.5, "beta": 1.0, "z": -1.0, "policy_coef": 1.0},
    "scaled PPO": {"algo": "ppo", "alpha": 1.0, "beta": 0.0, "z": -1.0, "policy_coef": 1.5},
}
EVAL_STEPS = [1000, 2000, 3000, 4000, 5000]
SHORT_RUN = ("PongNoFrameskip-v4", "gaussian:0.1", "PPO", 2)  # stopped after 3 evaluations, still "running"


def final_return(env: str, noise: str, algorithm: str, seed: int) -> float:
    """Known final returns. CartPole clean: SPPO clearly separated above the others. CartPole gaussian: all
    three overlap. Pong: moderate differences."""
    if env == "CartPole-v1" and noise == "clean":
        return {"PPO": 100.0, "SPPO": 400.0, "scaled PPO": 200.0}[algorithm] + 3.0 * seed
    if env == "CartPole-v1":
        return {"PPO": 100.0, "SPPO": 110.0, "scaled PPO": 105.0}[algorithm] + 100.0 * seed
    return {"PPO": -15.0, "SPPO": -5.0, "scaled PPO": -10.0}[algorithm] + 4.0 * seed + (3.0 if noise == "clean" else 0.0)


def write_run(root: Path, env: str, noise: str, algorithm: str, seed: int) -> Path:
    run_dir = root / f"{env}_{noise.replace(':', '')}_{algorithm.replace(' ', '_')}_s{seed}"
    run_dir.mkdir(parents=True)
    config = {"env": env, "seed": seed, "bins": 0, "total_steps": 5000, "reward_noise": None if noise == "clean" else noise,
              **ALGORITHMS[algorithm]}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "labels.json").write_text(json.dumps({"algorithm": algorithm, "noise": noise}))
    short = (env, noise, algorithm, seed) == SHORT_RUN
    steps = EVAL_STEPS[:3] if short else EVAL_STEPS
    final = final_return(env, noise, algorithm, seed)
    lines = ["step,mean_return,std_return,episodes"]
    lines += [f"{step},{final * (i + 1) / len(steps)},1.0,5" for i, step in enumerate(steps)]
    (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    ratio = "" if algorithm == "PPO" else "0.1"  # PPO logs no sign-change ratio here
    metric_lines = ["step,sign_change_ratio"] + [f"{step},{ratio}" for step in range(500, steps[-1] + 1, 500)]
    (run_dir / "metrics.csv").write_text("\n".join(metric_lines) + "\n")
    (run_dir / "status.json").write_text(json.dumps({"state": "running" if short else "finished"}))
    return run_dir


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("study")
    runs_dir = root / "runs"
    for env in ENVS:
        for noise in NOISES:
            for algorithm in ALGORITHMS:
                for seed in SEEDS:
                    write_run(runs_dir, env, noise, algorithm, seed)
    out = root / "report"
    markdown_path = report.write_report([runs_dir], out, seed=0, reps=200)
    return {"runs": runs_dir, "out": out, "md_path": markdown_path, "md": markdown_path.read_text(encoding="utf-8"),
            "html": (out / "report.html").read_text(encoding="utf-8")}


def test_files_exist(study: dict) -> None:
    assert study["md_path"] == study["out"] / "report.md"
    assert (study["out"] / "report.html").is_file()
    assert list((study["out"] / "figures").glob("*.png"))


def test_sections_in_order(study: dict) -> None:
    headings = ["# symrl report", "## Score per environment", "## Robustness to reward noise",
                "## SPPO vs the scaled-PPO control", "## Aggregate across environments", "## Learning curves",
                "## Sign-change ratio and other diagnostics"]
    positions = [study["md"].index(heading + "\n") for heading in headings]
    assert positions == sorted(positions)


def test_header_counts_and_unfinished_run(study: dict) -> None:
    assert "36 runs: 2 environments, 3 algorithms, 2 noise settings, 3 seeds (0, 1, 2)" in study["md"]
    assert "| CartPole-v1 | 5,000 | 18 | 5000 |" in study["md"]
    unfinished = [line for line in study["md"].splitlines() if line.startswith("- `")]
    assert len(unfinished) == 1 and "PPO_s2" in unfinished[0] and "running, last evaluation at step 3000" in unfinished[0]


def test_html_images_are_embedded_pngs(study: dict) -> None:
    parser = _Images()
    parser.feed(study["html"])
    assert len(parser.sources) == study["md"].count("![")
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(io.BytesIO(data), format="png").ndim == 3
    assert "http://" not in study["html"] and "https://" not in study["html"]


def test_referenced_figures_exist(study: dict) -> None:
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", study["md"])
    # 2 learning-curve figures, 2 sign-change figures, SPPO and its control of one seed (no aggregates: 2 envs)
    assert sorted(Path(path).name.split("_")[0] for path in referenced) == ["curves", "curves", "sign", "sign", "sppo"]
    for path in referenced:
        assert path.startswith("figures/") and (study["out"] / path).is_file()


def test_summary_numbers_in_markdown_and_html(study: dict) -> None:
    summary = report.summary_table([study["runs"]])
    assert len(summary) == len(ENVS) * len(NOISES) * len(ALGORITHMS)
    for row in summary.itertuples():
        cell = report.format_ci(row.mean, row.low, row.high, row.n)
        assert cell in study["md"], cell
        assert cell in study["html"], cell
    short = summary[(summary.env == SHORT_RUN[0]) & (summary.noise == SHORT_RUN[1]) & (summary.algorithm == SHORT_RUN[2])]
    assert short["unfinished"].item() == 1 and short["n"].item() == 3
    # the short run stopped before the last 20% of training: it counts with its last evaluation (its final_return)
    expected = np.mean([final_return(*SHORT_RUN[:3], seed) * (1.0 if seed == SHORT_RUN[3] else 0.9) for seed in SEEDS])
    assert short["mean"].item() == pytest.approx(expected)
    pd.testing.assert_frame_equal(summary, report.summary_table(results.load_evaluations([study["runs"]])))


def _table_rows(markdown: str, env: str) -> dict[str, str]:
    section = markdown.split(f"### {env}\n\n", 1)[1].split("\n\n", 1)[0]
    return {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ") and "---" not in line}


def test_bold_only_where_intervals_separate(study: dict) -> None:
    summary = report.summary_table([study["runs"]])
    cartpole = _table_rows(study["md"], "CartPole-v1")
    separated_row, overlapping_row = cartpole["clean"], cartpole["gaussian:0.1"]
    sppo = summary[(summary.env == "CartPole-v1") & (summary.noise == "clean") & (summary.algorithm == "SPPO")].iloc[0]
    assert separated_row.count("**") == 2
    assert f"**{report.format_ci(sppo['mean'], sppo['low'], sppo['high'], sppo['n'])}**" in separated_row
    assert "**" not in overlapping_row
    assert study["html"].count("<strong>") == study["md"].count("**") // 2
    # the rule, on every row: bold exactly where the highest mean's CI is separated from all others
    for (env, noise), rows in summary.groupby(["env", "noise"]):
        best = rows.loc[rows["mean"].idxmax()]
        expect_bold = all(stats.separated((best["low"], best["high"]), (o.low, o.high))
                          for o in rows.itertuples() if o.algorithm != best["algorithm"])
        assert ("**" in _table_rows(study["md"], env)[noise]) == expect_bold


def test_sppo_vs_scaled_ppo_section(study: dict) -> None:
    section, tracking = study["md"].split("## SPPO vs the scaled-PPO control\n", 1)[1].split("### SPPO and its control", 1)
    assert "gradient equals PPO's multiplied by c" in section
    # these hand-written runs differ from the first evaluation on: the seed-by-seed table says so
    assert "| CartPole-v1 | clean | 0 | 0 of 5 | 1000 |" in tracking
    rows = [line for line in section.splitlines() if line.startswith("| CartPole-v1") or line.startswith("| PongNoFrameskip")]
    assert len(rows) == len(ENVS) * len(NOISES)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[2:4] == ["SPPO", "scaled PPO"]
        assert cells[9:] == ["1.5", "1.5", "yes"]
    clean = next(row for row in rows if row.startswith("| CartPole-v1 | clean"))
    # scores are the mean of the evaluations at 4000 and 5000, 0.9 x the final returns: SPPO 0.9 x (400, 403, 406)
    # vs control 0.9 x (200, 203, 206): Welch's interval 180 +- t(4) * sqrt(2 * 0.81 * 9 / 3)
    spread = [0.0, 2.7, 5.4]
    difference = stats.contrast([(1, spread), (-1, spread)])
    assert cells_of(clean)[6:9] == [report.format_interval(180.0, 180.0 - difference.high, 180.0 + difference.high),
                                    report.format_number(difference.mdd), "SPPO higher"]
    gaussian = next(row for row in rows if row.startswith("| CartPole-v1 | gaussian"))
    assert cells_of(gaussian)[8] == "not resolved"  # 110 vs 105 with seeds 100 apart
    assert "not evidence that there is none" in section


def cells_of(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_runs_of_different_configs_under_one_label_are_warned_about(tmp_path: Path) -> None:
    """Two SPPO configs (beta 1 and 20) without a sweep's labels share the label SPPO: the report says so."""
    for seed in (0, 1):
        write_run(tmp_path / "runs", "CartPole-v1", "clean", "SPPO", seed)
    other = tmp_path / "runs" / "CartPole-v1_clean_SPPO_s1"
    (other / "config.yaml").write_text(yaml.safe_dump({**yaml.safe_load((other / "config.yaml").read_text()), "beta": 20.0}))
    markdown = report.write_report(tmp_path / "runs", tmp_path / "out", reps=50).read_text(encoding="utf-8")
    warnings = markdown.split("## Warnings\n", 1)[1].split("##", 1)[0]
    assert "CartPole-v1 / clean / SPPO: its runs differ in beta" in warnings


def test_control_section_of_a_table_without_loss_columns() -> None:
    """A hand-built table (not from run directories) has no loss_variant or reverse_mask column."""
    scores = pd.DataFrame([{"env": "E", "noise": "clean", "algorithm": label, "algo": algo, "seed": seed, "alpha": alpha,
                            "beta": beta, "z": -1.0, "policy_coef": coef, "bins": 0, "score": value + seed,
                            "state": "finished"}
                          for label, algo, alpha, beta, coef, value in (("SPPO", "sppo", 0.5, 1.0, 1.0, 10.0),
                                                                        ("scaled PPO", "ppo", 1.0, 0.0, 1.5, 5.0))
                          for seed in range(3)])
    lines = report._control_section(scores, pd.DataFrame(), Path("unused"), {})
    row = next(line for line in lines if line.startswith("| E | clean | SPPO"))
    difference = stats.contrast([(1, [10.0, 11.0, 12.0]), (-1, [5.0, 6.0, 7.0])])
    assert cells_of(row)[6:] == [report.format_interval(5.0, difference.low, difference.high),
                                 report.format_number(difference.mdd), "SPPO higher", "1.5", "1.5", "yes"]


def test_control_c_of_the_mae_variant(tmp_path: Path) -> None:
    """MAE's reverse term has the gradient of RCE's with z = -2: c = 0.5 + 1 * 2 = 2.5, not 0.5 + 1 * |z| = 1.5."""
    sppo = write_run(tmp_path / "runs", "CartPole-v1", "clean", "SPPO", 0)
    (sppo / "config.yaml").write_text(yaml.safe_dump({**yaml.safe_load((sppo / "config.yaml").read_text()),
                                                      "loss_variant": "mae"}))
    write_run(tmp_path / "runs", "CartPole-v1", "clean", "scaled PPO", 0)
    markdown = report.write_report(tmp_path / "runs", tmp_path / "out", reps=50).read_text(encoding="utf-8")
    section = markdown.split("## SPPO vs the scaled-PPO control\n", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| CartPole-v1 | clean | SPPO"))
    assert [cell.strip() for cell in row.strip("|").split("|")][9:] == ["2.5", "1.5", "no"]


def test_aggregates_need_five_environments_and_state_the_anchors(study: dict, tmp_path: Path) -> None:
    assert "Left out: 2 environments." in study["md"] and "| IQM |" not in study["md"]
    envs = ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "PongNoFrameskip-v4", "Pendulum-v1"]
    for env in envs:
        for algorithm in ("PPO", "SPPO"):
            for seed in SEEDS:
                write_run(tmp_path / "runs", env, "clean", algorithm, seed)
    md = report.write_report(tmp_path / "runs", tmp_path / "out", reps=100).read_text(encoding="utf-8")
    section = md.split("## Aggregate across environments\n", 1)[1].split("\n## ", 1)[0]
    assert "human tester" in section and "Pong" in section and "Gymnasium's reward_threshold" in section
    assert "Pendulum-v1: no fixed anchors" in section and "min-max" in section  # the labelled fallback
    assert "### Probability of improvement over PPO" in section
    improvement = [line for line in section.splitlines() if line.startswith("| clean | SPPO |") and line.count("|") == 4]
    assert improvement and float(improvement[0].split("|")[3].split("[")[0]) > 0.8


def test_sign_change_skipped_without_data(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "runs", "CartPole-v1", "clean", "PPO", 0)
    (run_dir / "metrics.csv").write_text("step,sign_change_ratio\n500,\n")
    markdown = report.write_report(run_dir, tmp_path / "out", reps=50).read_text(encoding="utf-8")
    assert "No run logged a sign-change ratio, gradient norm or action probability" in markdown
    assert "Left out: 1 environment." in markdown
    assert "## SPPO vs the scaled-PPO control" not in markdown


def test_one_environment_has_no_aggregates_and_failed_cells_and_numeric_labels_are_reported(tmp_path: Path) -> None:
    """One environment: no bootstrap aggregates over its few seeds; a cell that failed before writing config.yaml is
    listed, not silently dropped; a hand-written numeric label is text."""
    root = tmp_path / "runs"
    for algorithm in ("PPO", "SPPO"):
        write_run(root, "CartPole-v1", "clean", algorithm, 0)
    numeric = write_run(root, "CartPole-v1", "clean", "PPO", 1)
    (numeric / "labels.json").write_text(json.dumps({"algorithm": 5, "noise": "clean"}))
    failed = root / "DPPO_seed0"
    failed.mkdir()
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "SymrlError: --bins discretises Box"}))
    markdown = report.write_report(root, tmp_path / "out", baseline="ppo", reps=50).read_text(encoding="utf-8")
    assert "Left out: 1 environment." in markdown and "| IQM |" not in markdown
    assert "1 run stopped before training (no config.yaml) and left out:" in markdown
    assert "DPPO_seed0`: failed (SymrlError: --bins discretises Box)" in markdown
    assert "All runs that started finished." in markdown
    assert "| 5 |" in markdown  # the numeric label, as text


def test_the_cli_table_marks_settings_with_unfinished_runs(study: dict, tmp_path: Path, capsys) -> None:
    from symrl.cli import main

    assert main(["report", str(study["runs"]), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("†") == 2 and "† includes runs not finished" in out  # one marked setting, and the legend


def test_cli_min_max_replaces_an_envs_anchors_in_the_report(study: dict, tmp_path: Path, capsys) -> None:
    from symrl.cli import main

    assert main(["report", str(study["runs"]), "--out", str(tmp_path / "out"), "--min-max", "PongNoFrameskip-v4"]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "PongNoFrameskip-v4: min-max asked for (--min-max) instead of its fixed anchors" in markdown
    assert "PongNoFrameskip-v4: fixed anchors" in study["md"]  # without the flag: Pong's random and human scores
    capsys.readouterr()
    assert main(["report", str(study["runs"]), "--out", str(tmp_path / "out"), "--min-max", "Pong-v5"]) == 2
    assert "error: min-max asked for Pong-v5, which no run has" in capsys.readouterr().err


def test_unknown_baseline_is_refused(study: dict, tmp_path: Path) -> None:
    with pytest.raises(SymrlError, match="baseline 'A2C'"):
        report.write_report(study["runs"], tmp_path / "out", baseline="A2C")


def test_folder_without_runs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SymrlError) as error:
        report.write_report([tmp_path / "empty"], tmp_path / "out")
    assert "\n" not in str(error.value)
    with pytest.raises(SymrlError):
        report.summary_table([tmp_path / "empty"])


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "labels.json").write_text("[1, 2]"), "not a JSON object of labels"),
    (lambda run: (run / "config.yaml").write_text("env: CartPole-v1\nseed: null\n"), "seed must be an integer"),
    (lambda run: (run / "config.yaml").write_text("env: CartPole-v1\nseed: 0\nbins: many\n"), "malformed value"),
    (lambda run: (run / "eval.csv").write_text("step,score\n100,1.0\n"), "lacks the step or mean_return column"),
    (lambda run: (run / "eval.csv").write_text("step,mean_return\n100,1.0\n200,lots\n"),
     "mean_return 'lots' on row 3 is not a number; fix or delete that row"),
])
def test_damaged_run_files_are_one_line_errors(tmp_path: Path, damage, message) -> None:
    run_dir = write_run(tmp_path / "runs", "CartPole-v1", "clean", "PPO", 0)
    damage(run_dir)
    with pytest.raises(SymrlError, match=message) as error:
        report.write_report(run_dir, tmp_path / "out", reps=50)
    assert "\n" not in str(error.value)


def test_a_row_cut_off_by_a_killed_writer_is_not_read(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "runs", "CartPole-v1", "clean", "PPO", 0)
    whole = (run_dir / "eval.csv").read_text()
    (run_dir / "eval.csv").write_text(whole + "6000,12")  # the writer died in the middle of "6000,123.5,1.0,5"
    assert results.load_evaluations([run_dir])["step"].max() == 5000


def test_a_run_named_twice_counts_once(tmp_path: Path, monkeypatch) -> None:
    run_dir = write_run(tmp_path / "runs", "CartPole-v1", "clean", "PPO", 0)
    monkeypatch.chdir(tmp_path)
    table = report.summary_table([Path("runs") / run_dir.name, run_dir.resolve(), tmp_path / "runs"])
    assert table["n"].tolist() == [1]


def test_report_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "runs", "CartPole-v1", "clean", "PPO", 0)
    (tmp_path / "report.md").write_text("mine")
    with pytest.raises(SymrlError, match="is a file; --out takes the folder"):
        report.write_report(run_dir, tmp_path / "report.md", reps=50)
    assert (tmp_path / "report.md").read_text() == "mine"


def test_markdown_to_html_escapes_and_renders(tmp_path: Path) -> None:
    page = report.markdown_to_html("# a <b>\n\ntext **bold** `x<y`\n\n| h1 | h2 |\n|---|---|\n| a\\|b | **c** |\n\n- item\n",
                                   tmp_path)
    assert "<h1>a &lt;b&gt;</h1>" in page
    assert "<p>text <strong>bold</strong> <code>x&lt;y</code></p>" in page
    assert "<td>a|b</td><td><strong>c</strong></td>" in page
    assert "<ul><li>item</li></ul>" in page


def test_format_number() -> None:
    assert report.format_number(123.456) == "123.5"
    assert report.format_number(0.0123456) == "0.01235"
    assert report.format_number(123456.7) == "123457"
    assert report.format_number(float("nan")) == "–"
    assert report.format_ci(1.0, 0.5, 1.5, 3) == "1 [0.5, 1.5] (3 seeds)"


def _score_from_files(run_dir: Path) -> float:
    """A run's score computed directly from its files: the mean return of the evaluations in the last 20% of
    total_steps, or the last evaluation if none is there."""
    total = yaml.safe_load((run_dir / "config.yaml").read_text())["total_steps"]
    rows = [line.split(",") for line in (run_dir / "eval.csv").read_text().splitlines()[1:]]
    late = [float(r[1]) for r in rows if float(r[0]) >= 0.8 * total] or [float(rows[-1][1])]
    return sum(late) / len(late)


def test_robustness_numbers_equal_a_direct_computation_from_eval_files(study: dict) -> None:
    anchors_of = {"CartPole-v1": (24.96, 500.0), "PongNoFrameskip-v4": (-20.7, 14.6)}  # anchors.yaml, atari_scores

    def normalised(env: str, noise: str, algorithm: str) -> list[float]:
        low, high = anchors_of[env]
        runs = sorted(study["runs"].glob(f"{env}_{noise.replace(':', '')}_{algorithm.replace(' ', '_')}_s*"))
        return [(_score_from_files(run) - low) / (high - low) for run in runs]

    section = study["md"].split("## Robustness to reward noise\n", 1)[1].split("\n## ", 1)[0]
    per_task = {}
    for env in ENVS:
        terms = [(1, normalised(env, "gaussian:0.1", "SPPO")), (-1, normalised(env, "gaussian:0.1", "scaled PPO")),
                 (-1, normalised(env, "clean", "SPPO")), (1, normalised(env, "clean", "scaled PPO"))]
        per_task[env] = terms
        did = stats.contrast(terms)
        row = next(line for line in section.splitlines()
                   if line.startswith(f"| {env} | SPPO | scaled PPO | gaussian:0.1 | difference in differences"))
        assert cells_of(row)[5] == report.format_interval(did.estimate, did.low, did.high)
        assert cells_of(row)[7] == report.format_number(did.mdd)
        change = stats.contrast([(1, normalised(env, "gaussian:0.1", "PPO")), (-1, normalised(env, "clean", "PPO"))])
        drop = next(line for line in section.splitlines() if line.startswith(f"| {env} | PPO | gaussian:0.1 |"))
        assert cells_of(drop)[5] == report.format_interval(change.estimate, change.low, change.high)
    pooled = stats.contrast([(w / 2, v) for env in ENVS for w, v in per_task[env]])
    row = next(line for line in section.splitlines()
               if line.startswith("| pooled (2 tasks) | SPPO | scaled PPO | gaussian:0.1 | difference in differences"))
    assert cells_of(row)[5] == report.format_interval(pooled.estimate, pooled.low, pooled.high)
    assert cells_of(row)[-1] in ("**helps**", "**no useful effect**", "**inconclusive**")
    # the console's verdict lines are computed from the same runs
    lines = report.robustness_lines([study["runs"]])
    assert any(line.startswith(cells_of(row)[-1].strip("*") + ": SPPO vs scaled PPO, difference in differences") and
               report.format_interval(pooled.estimate, pooled.low, pooled.high) in line for line in lines)


def test_robustness_without_noisy_runs_is_one_line(tmp_path: Path) -> None:
    for algorithm in ("PPO", "SPPO"):
        write_run(tmp_path / "runs", "CartPole-v1", "clean", algorithm, 0)
    markdown = report.write_report(tmp_path / "runs", tmp_path / "out", reps=50).read_text(encoding="utf-8")
    section = markdown.split("## Robustness to reward noise\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip().startswith("Skipped: no algorithm has runs both clean and with noise")
    assert report.robustness_lines(tmp_path / "runs") == [
        "not compared: SPPO on CartPole-v1: no rescaled control (ppo with beta 0 and policy_coef 1.5); "
        "train `ppo --policy-coef 1.5` on it to compare"]


def test_diagnostics_clip_share_and_sa2c_weight(tmp_path: Path) -> None:
    """The share of updates whose gradient norm exceeded max_grad_norm, and SA2C's mean weight alpha + beta|z| p."""
    for algorithm, grad_norms, probs in (("PPO", [0.1, 0.9, 0.2, 0.8], [0.5] * 4), ("SPPO", [0.1] * 4, [0.2, 0.4, 0.6, 0.8])):
        run = write_run(tmp_path / "runs", "CartPole-v1", "clean", algorithm, 0)
        config = {**yaml.safe_load((run / "config.yaml").read_text()), "max_grad_norm": 0.5}
        if algorithm == "SPPO":  # made an SA2C run (alpha 0.5, beta 1, z -1)
            config["algo"] = "sa2c"
            (run / "labels.json").write_text(json.dumps({"algorithm": "SA2C", "noise": "clean"}))
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        rows = [f"{500 * (i + 1)},,{g},{p}" for i, (g, p) in enumerate(zip(grad_norms, probs, strict=True))]
        (run / "metrics.csv").write_text("step,sign_change_ratio,grad_norm,action_prob\n" + "\n".join(rows) + "\n")
    markdown = report.write_report(tmp_path / "runs", tmp_path / "out", reps=50).read_text(encoding="utf-8")
    section = markdown.split("## Sign-change ratio and other diagnostics\n", 1)[1]
    assert "| CartPole-v1 | clean | PPO | 0.5 | – | 1 |" in section  # 2 of 4 updates above 0.5
    assert "| CartPole-v1 | clean | SA2C | 0 | 1 | 1 |" in section  # 0.5 + 1 * 1 * mean(0.2 .. 0.8) = 1.0


def test_diagnostics_come_from_a_studys_metrics_summary_when_metrics_csv_is_not_kept(tmp_path: Path) -> None:
    """A study commits metrics_summary.csv (per-run means, studies/robustness/collect.py) instead of the large
    metrics.csv logs: the report's diagnostics table from it equals the one from the logs themselves."""
    root = tmp_path / "study"
    for algorithm, seed, grad_norms, probs in (("PPO", 0, [0.1, 0.9, 0.2, 0.8], [0.5] * 4),
                                               ("PPO", 1, [0.9, 0.9, 0.9, 0.1], [0.5] * 4),
                                               ("SPPO", 0, [0.1, "", 0.7, 0.1], [0.2, 0.4, 0.6, 0.8])):
        run = write_run(root / "block", "CartPole-v1", "clean", algorithm, seed)
        config = {**yaml.safe_load((run / "config.yaml").read_text()), "max_grad_norm": 0.5}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        rows = [f"{500 * (i + 1)},{0.1 * i},{g},{p}" for i, (g, p) in enumerate(zip(grad_norms, probs, strict=True))]
        (run / "metrics.csv").write_text("step,sign_change_ratio,grad_norm,action_prob\n" + "\n".join(rows) + "\n")

    def diagnostics(out: str) -> str:
        markdown = report.write_report(root, tmp_path / out, reps=50).read_text(encoding="utf-8")
        return markdown.split("## Sign-change ratio and other diagnostics\n", 1)[1].split("\n## ", 1)[0]

    from_logs = diagnostics("logs")
    assert "| CartPole-v1 | clean | PPO | 0.15 | 0.625 | 2 |" in from_logs  # clip shares 2/4 and 3/4; "" is not logged
    assert "| CartPole-v1 | clean | SPPO | 0.15 | 0.3333 | 1 |" in from_logs  # 1 of the 3 logged norms above 0.5
    run_dirs = results.find_runs([root / "block"])
    summary = results.summarize_metrics(results.load_metrics(run_dirs))
    logged_curve = results.curve_of_metrics(results.load_metrics(run_dirs))
    assert logged_curve["runs"].tolist() == [2] * 4 + [1] * 4  # PPO's two seeds, then SPPO's one, at each step
    assert logged_curve["sign_change_ratio"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3] * 2)
    summary.index = [Path(run).relative_to(root / "block").as_posix() for run in summary.index]
    (root / "block" / results.METRICS_SUMMARY).write_text(summary.rename_axis("run").to_csv())
    (run_dirs[0] / "metrics.csv").unlink()  # one run keeps only its summary row
    mixed = diagnostics("mixed")
    for run_dir in run_dirs[1:]:
        (run_dir / "metrics.csv").unlink()
    from_summary = diagnostics("summary")
    table = [line for line in from_logs.splitlines() if line.startswith("|")]
    assert table and all(line in mixed and line in from_summary for line in table)
    assert "1 of 3 runs kept only their per-run means" in mixed and "drawn from the other 2" in mixed
    assert "3 of 3 runs kept only their per-run means" in from_summary and "are not drawn" in from_summary
    assert "![sign-change ratio" in mixed and "![sign-change ratio" not in from_summary
    # with the curves a study stores beside the summary (collect.py), the figures come back, drawn from the same means
    (root / "block" / results.METRIC_CURVES).write_text(logged_curve.to_csv(index=False))
    stored, read = results.load_metric_curves(run_dirs)
    assert read == [root / "block" / results.METRIC_CURVES]
    pd.testing.assert_frame_equal(stored, logged_curve, check_dtype=False)
    with_curves = diagnostics("curves")
    assert "![sign-change ratio" in with_curves and "means stored in 1 file metric_curves.csv" in with_curves
