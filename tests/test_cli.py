"""The command line: every user mistake is one ``error:`` line and exit code 2, and touches no run.

Everything here is a real run (no mocks): the CLI runs in-process through ``symrl.cli.main`` (stderr
captured with capsys), plus one real ``python -m symrl.cli`` subprocess for the exit status and the exact
stderr. Runs are tiny (a few hundred CartPole steps).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symrl import runs
from symrl.cli import main

QUIET = ["--no-progress", "--set", "tensorboard=false"]
TINY = ["--set", "n_steps=64", "--set", "n_envs=2", "--set", "eval_freq=256", "--set", "eval_episodes=2",
        "--set", "checkpoint_freq=256"]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict:
    """Every file under ``root`` (relative path -> bytes), to prove a failed command changed nothing."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(capsys, argv):
    """``main(argv)`` in-process; returns (exit code, stdout, stderr lines)."""
    capsys.readouterr()  # drop anything printed before
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def assert_one_error(code, err_lines, pattern, exit_code=2):
    assert code == exit_code, f"exit code {code}, stderr {err_lines!r}"
    assert len(err_lines) == 1, f"expected exactly one stderr line, got {err_lines!r}"
    line = err_lines[0]
    assert line.startswith("error:"), line
    assert re.search(pattern, line), f"{line!r} does not name the problem ({pattern!r})"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished PPO CartPole run (shared, read-only: tests copy it before touching it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    code = main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "256", "--out", str(out), *QUIET, *TINY])
    assert code == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run that a test may pass to a failing command."""
    dst = tmp_path / "existing"
    shutil.copytree(finished_run, dst)
    return dst


# --------------------------------------------------------------------------------------------------
# bad training inputs
# --------------------------------------------------------------------------------------------------

CARTPOLE = ["--algo", "ppo", "--env", "CartPole-v1"]

# (id, argv after "train" without --out, regex the error line must match)
BAD_TRAIN = [
    ("unknown-env", ["--algo", "ppo", "--env", "CartPol-v1"], r"CartPol-v1.*CartPole-v1"),
    ("reward-noise-kind", [*CARTPOLE, "--reward-noise", "gauss:0.1"], r"--reward-noise.*gauss:0\.1"),
    ("reward-noise-prob", [*CARTPOLE, "--reward-noise", "flip:2"], r"--reward-noise.*flip:2"),
    ("reward-noise-value", [*CARTPOLE, "--reward-noise", "gaussian:abc"], r"--reward-noise.*abc"),
    ("adv-noise-kind", [*CARTPOLE, "--adv-noise", "gaussian:0.1"], r"--adv-noise.*gaussian:0\.1"),
    ("bins-on-discrete", [*CARTPOLE, "--bins", "5"], r"--bins.*Discrete"),
    ("bins-one", ["--algo", "ppo", "--env", "Pendulum-v1", "--bins", "1"], r"bins"),
    ("steps-zero", [*CARTPOLE, "--steps", "0"], r"--steps.*'0'"),
    ("steps-negative", [*CARTPOLE, "--steps", "-5"], r"--steps.*'-5'"),
    ("steps-text", [*CARTPOLE, "--steps", "abc"], r"--steps.*'abc'"),
    ("steps-fraction", [*CARTPOLE, "--steps", "1.5"], r"--steps.*'1\.5'"),
    ("n-envs-zero", [*CARTPOLE, "--n-envs", "0"], r"--n-envs"),
    ("unknown-preset", [*CARTPOLE, "--preset", "nosuch"], r"preset.*nosuch"),
    ("unknown-set-key", [*CARTPOLE, "--set", "gama=0.9"], r"gama.*did you mean gamma"),
    ("set-float-type", [*CARTPOLE, "--set", "gamma=abc"], r"gamma.*abc"),
    ("set-int-type", [*CARTPOLE, "--set", "n_steps=1.5"], r"n_steps.*1\.5"),
    ("set-bool-type", [*CARTPOLE, "--set", "norm_obs=maybe"], r"norm_obs.*maybe"),
    ("set-list-type", [*CARTPOLE, "--set", "net_arch=5"], r"net_arch"),
    ("set-no-equals", [*CARTPOLE, "--set", "gamma"], r"--set.*key=value"),
    ("set-bad-choice", [*CARTPOLE, "--set", "optimizer=sgd"], r"optimizer.*sgd"),
    ("set-zero-steps", [*CARTPOLE, "--set", "n_steps=0"], r"n_steps.*positive"),
    ("sppo-box-gaussian", ["--algo", "sppo", "--env", "Pendulum-v1", "--bins", "0"], r"--bins"),
    ("missing-algo", ["--env", "CartPole-v1"], r"--algo"),
    ("unknown-algo", ["--algo", "dqn", "--env", "CartPole-v1"], r"dqn"),
    ("network-too-big", [*CARTPOLE, "--set", "net_arch=[100000000,100000000]"], r"does not fit in memory.*net_arch"),
    ("unknown-env-with-preset", ["--algo", "ppo", "--env", "CartPol-v1", "--preset", "classic"], r"CartPole-v1"),
    ("cnn-on-vector-obs", [*CARTPOLE, "--set", "network=cnn"], r"network=cnn"),  # found when the network is built
    ("set-algo", [*CARTPOLE, "--set", "algo=sppo"], r"--set algo=\.\.\. is not an override; give it as --algo"),
    ("alpha-inf", [*CARTPOLE, "--alpha", "inf"], r"alpha must be a finite number"),
    ("env-needs-a-package", ["--algo", "ppo", "--env", "HalfCheetah-v3"], r"HalfCheetah-v3 needs a package"),
    ("tuple-observations", ["--algo", "ppo", "--env", "Blackjack-v1"], r"Tuple.*not supported.*FlattenObservation"),
]

@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in BAD_TRAIN])
def test_bad_train_input_fresh_out(capsys, tmp_path, argv, pattern):
    out = tmp_path / "new"
    steps = [] if "--steps" in argv else ["--steps", "256"]
    code, stdout, err = run_cli(capsys, ["train", *argv, *steps, "--out", out, *QUIET])
    assert_one_error(code, err, pattern)
    assert not stdout.strip()
    assert not out.exists(), "a command that fails validation must not create its run directory"


@pytest.mark.parametrize("argv,pattern", [pytest.param(a, p, id=i) for i, a, p in BAD_TRAIN])
def test_bad_train_input_never_touches_existing_run(capsys, run_copy, argv, pattern):
    """Even with --overwrite, a command that fails validation must leave the existing run intact
    (the env id, --bins and the beta/Box check are only detected when the environments are built)."""
    before = snapshot(run_copy)
    steps = [] if "--steps" in argv else ["--steps", "256"]
    code, _, err = run_cli(capsys, ["train", *argv, *steps, "--out", run_copy, "--overwrite", *QUIET])
    assert_one_error(code, err, pattern)
    assert snapshot(run_copy) == before


def test_existing_run_dir_needs_resume_or_overwrite(capsys, run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "256", "--out", run_copy, *QUIET, *TINY])
    assert_one_error(code, err, r"already holds a run.*--resume.*--overwrite")
    assert snapshot(run_copy) == before


def test_a_new_run_in_a_folder_without_a_run_leaves_its_files(capsys, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "mine.mp4").write_text("the user's")
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "128", "--out", tmp_path, *QUIET, *TINY])
    assert code == 0, err
    assert (tmp_path / "videos" / "mine.mp4").read_text() == "the user's"


def test_overwrite_replaces_the_run_and_nothing_else(capsys, run_copy):
    """--overwrite removes the old run's outputs, not the folder: it may be a project folder or a sweep cell."""
    (run_copy / "videos").mkdir()
    (run_copy / "videos" / "old-episode-0.mp4").write_text("the old model's video")
    (run_copy / "notes.txt").write_text("the user's")
    (run_copy / "labels.json").write_text('{"algorithm": "PPO"}')
    (run_copy / "checkpoints" / "my_model.ckpt").write_text("the user's")  # issue 25: files of the user's inside
    (run_copy / "samples").mkdir()
    (run_copy / "samples" / "data.txt").write_text("the user's")
    assert (run_copy / "checkpoints" / "last.pt").exists() and (run_copy / "model.pt").exists()
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "128", "--out", run_copy, "--overwrite",
                                    *QUIET, *TINY])
    assert code == 0, err
    assert not (run_copy / "videos").exists()
    assert runs.safe_torch_load(run_copy / runs.CHECKPOINT)["counters"]["global_step"] == 128
    assert (run_copy / "notes.txt").read_text() == "the user's" and (run_copy / "labels.json").exists()
    assert (run_copy / "checkpoints" / "my_model.ckpt").read_text() == "the user's"
    assert (run_copy / "samples" / "data.txt").read_text() == "the user's"
    steps = [int(r["step"]) for r in csv.DictReader(open(run_copy / "metrics.csv"))]
    assert steps == [128]


# --------------------------------------------------------------------------------------------------
# bad resume / eval inputs
# --------------------------------------------------------------------------------------------------


def test_resume_without_out(capsys):
    code, _, err = run_cli(capsys, ["train", "--resume", "--no-progress"])
    assert_one_error(code, err, r"--resume.*--out")


def test_resume_on_dir_without_checkpoint(capsys, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--steps", "512", "--no-progress"])
    assert_one_error(code, err, r"checkpoints/last\.pt")
    assert snapshot(run_copy) == before


def test_resume_on_empty_dir(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", empty, "--steps", "512", "--no-progress"])
    assert_one_error(code, err, r"no resumable run")
    assert list(empty.iterdir()) == []


def test_resume_with_changed_setting(capsys, run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--steps", "512", "--seed", "3",
                                    "--no-progress"])
    assert_one_error(code, err, r"cannot change seed")
    assert snapshot(run_copy) == before


def test_resume_refuses_a_new_algorithm_env_or_overwrite(capsys, run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--algo", "sppo", "--no-progress"])
    assert_one_error(code, err, r"cannot change algo \(the run has 'ppo', given 'sppo'\) when resuming")
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--env", "Acrobot-v1", "--no-progress"])
    assert_one_error(code, err, r"cannot change env \(the run has 'CartPole-v1', given 'Acrobot-v1'\)")
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--overwrite", "--no-progress"])
    assert_one_error(code, err, r"--overwrite would replace it: drop one of them")
    assert snapshot(run_copy) == before


def test_resume_accepts_the_command_that_started_the_run(capsys, run_copy):
    """Re-running the original command with --resume (and a larger budget) continues the run."""
    code, out, err = run_cli(capsys, ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "512", "--out", run_copy,
                                      "--seed", "0", *QUIET, *TINY, "--resume"])
    assert code == 0, err
    assert "done: 512 steps" in out
    # a flag and a --set of the same setting: accepted when they agree, one error line when they do not
    code, out, err = run_cli(capsys, ["train", "--env", "CartPole-v1", "--set", "env=CartPole-v1", "--out", run_copy,
                                      "--resume", *QUIET])
    assert code == 0, err
    code, _, err = run_cli(capsys, ["train", "--env", "CartPole-v1", "--set", "env=Acrobot-v1", "--out", run_copy,
                                    "--resume", *QUIET])
    assert_one_error(code, err, r"--env CartPole-v1 and --set env=Acrobot-v1 disagree; give env once")


def test_out_that_is_a_file_or_cannot_be_made(capsys, tmp_path):
    (tmp_path / "afile").write_text("mine")
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "256", "--out", tmp_path / "afile", *QUIET])
    assert_one_error(code, err, r"afile is a file; --out takes the run's directory")
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "256", "--out", tmp_path / "afile" / "run", *QUIET])
    assert_one_error(code, err, r"cannot create .*afile/run .*choose another --out")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_malformed_preset_file_is_one_line(capsys, tmp_path):
    for text, pattern in (("common: 5\n", r"common must be a mapping"), ("envs: {CartPole: 5}\n", r"envs.CartPole must"),
                          ("symetric: {}\n", r"unknown section 'symetric'"), ("ppo: {gamma: 0.9}\nppo: {}\n", r"duplicate key"),
                          ("envs: {CartPole: {symmetric: {}}}\n",
                           r"unknown section of envs.CartPole 'symmetric'; use common, a2c, ppo, sa2c, sppo")):
        (tmp_path / "preset.yaml").write_text(text)
        code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--preset", tmp_path / "preset.yaml", "--out", tmp_path / "r",
                                        *QUIET])
        assert_one_error(code, err, pattern)
    (tmp_path / "preset.yaml").write_text("envs: {CartPole: null}\n")  # an empty section is no section
    from symrl.config import load_preset
    assert load_preset(str(tmp_path / "preset.yaml")) == {"envs": {"CartPole": None}}


def test_resuming_a_run_that_reached_stop_return_changes_nothing(capsys, tmp_path):
    out = tmp_path / "stopped"
    argv = ["train", "--algo", "a2c", *CARTPOLE[2:], "--steps", "5000", "--out", out, *QUIET, *TINY,
            "--set", "stop_return=5"]
    assert run_cli(capsys, argv)[0] == 0
    before = snapshot(out)
    steps = runs.read_status(out)["step"]
    assert steps < 5000  # stopped at the first evaluation
    code, stdout, _ = run_cli(capsys, ["train", "--resume", "--out", out, "--no-progress"])
    assert code == 0 and f"done: {steps} steps" in stdout
    assert {k: v for k, v in snapshot(out).items() if k != "status.json"} == {
        k: v for k, v in before.items() if k != "status.json"}  # the model and logs are untouched


def test_eval_missing_dir(capsys, tmp_path):
    missing = tmp_path / "nope"
    code, _, err = run_cli(capsys, ["eval", missing, "--episodes", "1"])
    assert_one_error(code, err, r"nope.*not a directory")
    assert not missing.exists()


def test_eval_dir_without_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["eval", tmp_path, "--episodes", "1"])
    assert_one_error(code, err, r"no saved model.*model\.pt")
    assert list(tmp_path.iterdir()) == []


def test_eval_corrupt_model(capsys, run_copy):
    (run_copy / "model.pt").write_bytes(b"\x00\x01this is not a torch file\xff" * 10)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, ["eval", run_copy, "--episodes", "1"])
    assert_one_error(code, err, r"model\.pt.*corrupt")
    assert snapshot(run_copy) == before


def test_eval_bad_episodes(capsys, finished_run):
    code, _, err = run_cli(capsys, ["eval", finished_run, "--episodes", "0"])
    assert_one_error(code, err, r"--episodes")


def test_eval_negative_seed(capsys, finished_run):
    code, _, err = run_cli(capsys, ["eval", finished_run, "--seed", "-1"])
    assert_one_error(code, err, r"--seed: '-1' must be >= 0")


def test_subprocess_exit_code_and_single_stderr_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "symrl.cli", "train", "--algo", "ppo", "--env", "CartPol-v1", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "CartPole-v1" in lines[0]
    assert proc.stdout == ""
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------------------------------

TRAIN_FLAGS = ["--algo", "--env", "--preset", "--steps", "--seed", "--bins", "--reward-noise", "--adv-noise",
               "--alpha", "--beta", "--z", "--set", "--out", "--resume", "--policy-coef", "--overwrite",
               "--no-progress", "--n-envs", "--eval-freq", "--eval-episodes"]
EVAL_FLAGS = ["--episodes", "--video", "--seed", "--deterministic", "--stochastic"]
RLHF_FLAGS = ["--task", "--algo", "--iterations", "--reward-noise", "--set", "--resume",
              "learning_rate", "kl_coef", "policy_model"]  # --set lists the config keys


@pytest.mark.parametrize("command,flags", [("train", TRAIN_FLAGS), ("eval", EVAL_FLAGS), ("rlhf", RLHF_FLAGS)])
def test_help(capsys, command, flags):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out), f"{command} --help does not mention {flag}"
    assert "default: None" not in out and "default: []" not in out  # only defaults worth showing


HEAVY = ("torch", "gymnasium", "numpy", "pandas", "transformers")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["rlhf", "--help"], ["sweep", "--help"]])
def test_help_loads_no_engine(argv):
    """`symrl --help` answers without loading torch, Gymnasium or NumPy (DESIGN: the CLI is a thin shell); the
    time this saves is measured in benchmarks/RESULTS.md, not here."""
    code = ("import sys; from symrl.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_public_api_loads_on_first_use():
    code = ("import sys, symrl\n"
            "assert 'torch' not in sys.modules\n"
            "names = [n for n in symrl.__all__ if n != '__version__']\n"
            "assert all(callable(getattr(symrl, n)) for n in names), names\n"
            "assert symrl.trainer.Trainer is symrl.Trainer and set(names) <= set(dir(symrl))\n"
            "try:\n    symrl.no_such_name\nexcept AttributeError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no attribute 'no_such_name'" in proc.stdout


# --------------------------------------------------------------------------------------------------
# a successful run, then eval
# --------------------------------------------------------------------------------------------------

def test_a_budget_that_is_not_whole_rollouts_rounds_up_and_says_so(capsys, tmp_path):
    argv = ["train", "--algo", "a2c", "--env", "CartPole-v1", "--steps", "200", "--out", tmp_path / "run", *QUIET, *TINY]
    code, stdout, _ = run_cli(capsys, argv)  # rollouts of 64 x 2 = 128 steps
    assert code == 0
    assert "done: 256 steps (the budget of 200 rounded up to whole rollouts of 128)" in stdout
    assert runs.read_status(tmp_path / "run")["step"] == 256


METRIC_HEADER_REQUIRED = ["step", "loss", "rl_loss", "reverse_loss", "entropy", "clip_fraction", "approx_kl",
                          "explained_variance", "sign_change_ratio", "sps"]


def test_train_then_eval_and_video(capsys, tmp_path):
    import json

    import torch
    import yaml

    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, ["train", "--algo", "sppo", "--env", "CartPole-v1", "--steps", "512",
                                         "--reward-noise", "gaussian:0.1", "--out", out, "--no-progress", *TINY])
    assert code == 0, err
    assert "done: 512 steps" in stdout

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["algo"] == "sppo" and config["env"] == "CartPole-v1" and config["total_steps"] == 512
    assert config["reward_noise"] == "gaussian:0.1" and config["n_steps"] == 64

    with open(out / "metrics.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    for column in METRIC_HEADER_REQUIRED:
        assert column in header, column
    assert [int(r[0]) for r in rows] == [128, 256, 384, 512]

    eval_lines = (out / "eval.csv").read_text().splitlines()
    assert eval_lines[0] == "step,mean_return,std_return,episodes"
    assert [line.split(",")[0] for line in eval_lines[1:]] == ["256", "512"]

    assert list((out / "tb").glob("events.out.tfevents.*")), "no TensorBoard events file"
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "model.pt").is_file()
    torch.load(out / "model.pt", weights_only=True)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 512

    code, stdout, err = run_cli(capsys, ["eval", out, "--episodes", "2"])
    assert code == 0, err
    assert re.search(r"mean return -?\d+\.\d+ \+- \d+\.\d+ over 2 episodes", stdout), stdout

    (out / "videos").mkdir()
    (out / "videos" / "rl-video-episode-7.mp4").write_bytes(b"an older evaluation's episode")
    code, stdout, err = run_cli(capsys, ["eval", out, "--episodes", "1", "--video"])
    assert code == 0, err
    assert "over 1 episodes" in stdout
    videos = list((out / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 100  # this evaluation's one episode, nothing older

    # in a process of its own, where SDL starts fresh: no window and no SDL "error: XDG_RUNTIME_DIR is invalid" line
    # (printed by C code when that variable is unset) among the lines a user greps for "^error:"
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
    done = subprocess.run([sys.executable, "-m", "symrl.cli", "eval", str(out), "--episodes", "1", "--video"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("error:")], done.stderr
    assert len(list((out / "videos").glob("*.mp4"))) == 1


def test_a_folder_with_a_config_yaml_of_the_users_is_refused_even_with_overwrite(capsys, tmp_path):
    (tmp_path / "config.yaml").write_text("learning_rate: 3\nmy_project: true\n")
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--out", tmp_path, "--overwrite", *QUIET, *TINY])
    assert_one_error(code, err, r"config.yaml is not a symrl run's config")
    assert (tmp_path / "config.yaml").read_text() == "learning_rate: 3\nmy_project: true\n"


def test_a_run_another_process_is_training_is_refused_and_left_alone(capsys, run_copy):
    """Issue 25: two processes must never train into one run folder: a resume (or an overwrite) of a run whose lock
    another process holds is one error line, and the folder stays as it was; free again once that process ends."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from symrl.runs import RunLock; "
                               f"RunLock({str(run_copy)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run_copy)
        for extra in (["--resume", "--steps", "512"], ["--overwrite", "--algo", "ppo", "--env", "CartPole-v1"]):
            code, _, err = run_cli(capsys, ["train", "--out", run_copy, *QUIET, *TINY, *extra])
            assert_one_error(code, err, r"another symrl process is training in .* now")
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_cli(capsys, ["train", "--resume", "--out", run_copy, "--steps", "512", *QUIET])
    assert code == 0, err


def test_sigterm_interrupts_a_run_which_then_resumes(tmp_path):
    """Issue 25: SIGTERM (a scheduler, `kill`) left status.json at `running, step 0`; now the run stops as on Ctrl-C:
    "interrupted" at the step it reached, and the status follows the checkpoints while it trains."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "symrl.cli", "train", *CARTPOLE, "--steps", "200000", "--out", str(out), *QUIET,
               "--set", "checkpoint_freq=1024"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while runs.read_status(out).get("step", 0) < 1024:
            assert time.time() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
            time.sleep(0.05)
        assert runs.read_status(out)["state"] == "running"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted; continue with `symrl train --resume" in stderr, stderr
    status = runs.read_status(out)
    assert status["state"] == "interrupted" and status["step"] >= 1024, status


@pytest.mark.parametrize("argv, message", [
    (["--steps", "1e99"], r"total_steps 1e\+99 is beyond any run"),
    (["--n-envs", "10000"], r"n_envs must be at most 4096"),
    (["--bins", "100000"], r"bins must lie in \[2, 256\]"),
])
def test_budgets_beyond_any_run_are_refused(capsys, tmp_path, argv, message):
    """Issue 25: `--steps 1e99` started a run that never ends; `--bins 100000` wrote a 78 MB checkpoint."""
    env = ["--env", "Pendulum-v1"] if "--bins" in argv else ["--env", "CartPole-v1"]
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo", *env, *argv, "--out", tmp_path / "run", *QUIET])
    assert_one_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_a_budget_smaller_than_one_rollout_is_said_before_the_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "50", "--out", tmp_path / "run", *QUIET, *TINY])
    assert code == 0 and err[0].startswith("note: a run trains whole rollouts of n_envs x n_steps = 128 steps"), err


def test_the_cli_puts_the_hosts_signal_handlers_back(capsys, tmp_path):
    """main() called in-process (a notebook, a test) leaves SIGINT and SIGTERM as they were."""
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(capsys, ["train", *CARTPOLE, "--steps", "128", "--out", tmp_path / "run", *QUIET, *TINY])
    assert code == 0, err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_commands_pointed_at_the_wrong_kind_of_thing_say_so(run_copy, tmp_path, capsys):
    """A device file as a sweep file, a text file as a model, a Gymnasium run resumed as a language-model run: one
    line that names what the path is, never advice to delete it."""
    from symrl import load
    from symrl.errors import SymrlError

    assert main(["sweep", "/dev/null"]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("a user's file")
    with pytest.raises(SymrlError, match="is not a run directory or a symrl model file") as exc:
        load(text)
    assert "delete" not in str(exc.value) and text.read_text() == "a user's file"
    assert main(["rlhf", "--resume", "--out", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "holds a Gymnasium run" in err and f"symrl train --resume --out {run_copy}" in err
    # and the other way round: one resume path (symrl.runs.resume_config) for both kinds of run
    from symrl import runs
    from symrl.rlhf.config import RLHFConfig

    lm_run = tmp_path / "lm"
    lm_run.mkdir()
    runs.write_config(lm_run, RLHFConfig(task="arithmetic").to_dict())
    (lm_run / runs.CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    (lm_run / runs.CHECKPOINT).write_bytes(b"")
    assert main(["train", "--resume", "--out", str(lm_run)]) == 2
    err = capsys.readouterr().err
    assert "holds a language-model run" in err and f"symrl rlhf --resume --out {lm_run}" in err


def test_a_full_or_read_only_disk_is_one_line_with_the_fix(run_copy, tmp_path, capsys, monkeypatch):
    """A disk that refuses a write (full: ENOSPC, injected into the metrics log; read-only: os.access says so, as
    on a read-only mount) gives one error line that names the cause and the fix, never a traceback; the videos of
    a run on a read-only disk go to --video-dir."""
    import errno

    from symrl import runs

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(runs.CsvLog, "write", full)
        code = main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "512", "--out", str(tmp_path / "r"),
                     *QUIET, *TINY])
    out, err = capsys.readouterr()
    assert_one_error(code, err.strip().splitlines(), r"the disk is full .* free some space, then continue with "
                     r"`symrl train --resume --out .*r`", exit_code=1)

    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != run_copy and writable(path, mode))
    code = main(["train", "--resume", "--out", str(run_copy), "--steps", "1024"])
    assert_one_error(code, capsys.readouterr().err.strip().splitlines(),
                     r"cannot write in .*existing \(not writable.*copy it somewhere writable and resume the copy")
    code = main(["eval", str(run_copy), "--video", "--episodes", "1"])
    assert_one_error(code, capsys.readouterr().err.strip().splitlines(),
                     r"cannot create .*existing/videos .*not writable.*choose another --video-dir")
    assert not (run_copy / runs.VIDEOS).exists()
