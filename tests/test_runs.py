"""Run directories: resume after interruptions, divergence handling, save/load round trips, atomic
writes and reproducibility. All real (tiny) training runs, no mocks.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import symrl
from symrl import runs
from symrl.cli import main
from symrl.errors import SymrlError
from symrl.trainer import Trainer

ROLLOUT = 128  # n_steps 64 x n_envs 2
EVAL_FREQ = 256
CKPT_FREQ = 512
TINY = ["--no-progress", "--set", "tensorboard=false", "--set", "n_steps=64", "--set", "n_envs=2",
        "--set", f"eval_freq={EVAL_FREQ}", "--set", "eval_episodes=2", "--set", f"checkpoint_freq={CKPT_FREQ}"]
API_TINY = dict(progress=False, tensorboard=False, n_steps=64, n_envs=2, eval_freq=EVAL_FREQ, eval_episodes=2,
                checkpoint_freq=CKPT_FREQ)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def cli(argv) -> int:
    return main([str(a) for a in argv])


def train_cartpole(out: Path, steps: int, *extra) -> None:
    assert cli(["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", steps, "--out", out, *TINY, *extra]) == 0


def resume(out: Path, steps: int) -> None:
    assert cli(["train", "--resume", "--out", out, "--steps", steps, "--no-progress"]) == 0


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def checkpoint_step(run_dir: Path) -> int:
    state = torch.load(run_dir / runs.CHECKPOINT, map_location="cpu", weights_only=True)
    return int(state["counters"]["global_step"])


def assert_consistent_logs(run_dir: Path, final_step: int) -> None:
    """metrics.csv: one row per update, steps contiguous multiples of the rollout size, updates 1..n;
    eval.csv: one complete row per evaluation point, no duplicates, ending at the final step."""
    metrics = read_rows(run_dir / runs.METRICS)
    steps = [int(r["step"]) for r in metrics]
    assert steps == list(range(ROLLOUT, final_step + 1, ROLLOUT)), steps
    assert [int(r["updates"]) for r in metrics] == list(range(1, len(steps) + 1))
    for row in metrics:
        assert None not in row.values(), f"incomplete metrics row {row}"
        assert math.isfinite(float(row["loss"])), row

    evals = read_rows(run_dir / runs.EVAL)
    eval_steps = [int(r["step"]) for r in evals]
    assert eval_steps == list(range(EVAL_FREQ, final_step + 1, EVAL_FREQ)), eval_steps
    for row in evals:
        assert int(row["episodes"]) == 2 and math.isfinite(float(row["mean_return"])), row

    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["step"] == final_step, status
    assert checkpoint_step(run_dir) == final_step
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def bogus_metrics_row(step: int) -> str:
    values = {c: "" for c in runs.METRIC_COLUMNS}
    values.update(step=step, updates=999, time=1.0, sps=1.0, loss=123.0)
    return ",".join(str(values[c]) for c in runs.METRIC_COLUMNS) + "\n"


# --------------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------------


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    train_cartpole(out, 1024)
    # a killed run leaves rows logged after its last checkpoint behind
    with open(out / runs.METRICS, "a") as handle:
        handle.write(bogus_metrics_row(1152) + bogus_metrics_row(1280))
    with open(out / runs.EVAL, "a") as handle:
        handle.write("1280,999,0,2\n")
    runs.write_status(out, "running", step=1280)

    resume(out, 2048)
    assert_consistent_logs(out, 2048)
    assert all(r["updates"] != "999" for r in read_rows(out / runs.METRICS))


def test_resume_from_an_older_checkpoint(tmp_path):
    """A run killed after logging past its checkpoint (the checkpoint is older than the logs)."""
    out = tmp_path / "run"
    train_cartpole(out, 512)
    old_checkpoint = (out / runs.CHECKPOINT).read_bytes()
    resume(out, 1024)  # logs 640..1024 and checkpoints at 1024 ...
    runs.atomic_write_bytes(out / runs.CHECKPOINT, old_checkpoint)  # ... which the "kill" never wrote
    (out / runs.MODEL).unlink()
    runs.write_status(out, "running", step=1024)
    assert checkpoint_step(out) == 512

    resume(out, 1536)
    assert_consistent_logs(out, 1536)


@pytest.mark.parametrize("torn", ["1", "1e"])
def test_resume_after_a_torn_trailing_row(tmp_path, torn):
    """A crash (power loss, full disk) can leave the last CSV line half written."""
    out = tmp_path / "run"
    train_cartpole(out, 512)
    for name in (runs.METRICS, runs.EVAL):
        with open(out / name, "a") as handle:
            handle.write(torn)  # no newline: the rest of the line never reached the disk
    resume(out, 1024)
    assert_consistent_logs(out, 1024)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00not text\n", b"foo,bar\n1,2\n"], ids=["not-utf8", "foreign-header"])
def test_resume_refuses_a_log_it_did_not_write_and_keeps_it(tmp_path, content, capsys):
    """A metrics.csv that is not text, or not this run's log, is refused with one line and left as it is (it used to
    be a traceback, or silently replaced by an empty log)."""
    out = tmp_path / "run"
    train_cartpole(out, 512)
    (out / runs.METRICS).write_bytes(content)
    assert cli(["train", "--resume", "--out", out, "--steps", 1024, "--no-progress"]) == 2
    assert "move it out of the run folder to resume" in capsys.readouterr().err
    assert (out / runs.METRICS).read_bytes() == content


def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "symrl.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
           "--steps", "10000000", "--out", str(out), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.time() + 90
        ckpt = out / runs.CHECKPOINT
        while not ckpt.exists():
            assert proc.poll() is None, f"training exited early: {proc.stderr.read().decode()}"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        # let it log past the checkpoint before killing it
        first = checkpoint_step(out)
        while max((int(r["step"]) for r in read_rows(out / runs.METRICS) if r.get("step")), default=0) <= first + ROLLOUT:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    assert runs.read_status(out)["state"] == "running"  # the kill left no chance to update it
    saved = checkpoint_step(out)
    logged = [int(r["step"]) for r in read_rows(out / runs.METRICS) if r.get("step")]
    assert max(logged) > saved, "the kill should leave rows after the checkpoint"
    assert saved % CKPT_FREQ == 0

    final = saved + 2 * EVAL_FREQ
    resume(out, final)
    assert_consistent_logs(out, final)


# --------------------------------------------------------------------------------------------------
# divergence
# --------------------------------------------------------------------------------------------------

# Pendulum without reward normalisation and a learning rate of 10: the first update (step 128) pushes
# log_std to ~50, the second (step 256) gets a NaN loss. Deterministic for a fixed seed.
DIVERGE = ["train", "--algo", "ppo", "--env", "Pendulum-v1", "--steps", "4096", "--no-progress",
           "--set", "tensorboard=false", "--set", "n_steps=64", "--set", "n_envs=2", "--set", "norm_reward=false",
           "--set", "norm_obs=false", "--set", "learning_rate=10", "--set", "checkpoint_freq=128",
           "--set", "eval_freq=100000", "--set", "eval_episodes=1"]


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    """(run dir, exit code, stderr lines) of a CLI run whose loss becomes NaN at its second update."""
    out = tmp_path_factory.mktemp("diverged") / "run"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli([*DIVERGE, "--out", out])
    return out, code, stderr.getvalue().splitlines()


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(diverged_run):
    out, code, lines = diverged_run
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("error:") and "non-finite" in lines[0], lines

    status = json.loads((out / runs.STATUS).read_text())
    assert status["state"] == "failed" and "non-finite" in status["error"]

    ckpt = out / runs.CHECKPOINT
    assert ckpt.exists(), "a checkpoint was due at step 128, before the divergence"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["counters"]["global_step"] < status["step"]
    for name, tensor in state["policy"].items():
        assert torch.isfinite(tensor).all(), name
    metrics = read_rows(out / runs.METRICS)
    assert metrics and all(math.isfinite(float(r["loss"])) for r in metrics)
    assert int(metrics[-1]["step"]) == state["counters"]["global_step"]

    agent = symrl.load(out)  # an unfinished run loads its last checkpoint
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    assert np.all(np.isfinite(agent.act(obs)))
    env.close()


def test_gaussian_agent_actions_lie_in_the_action_space(diverged_run):
    """Agent.act (used by `symrl eval --video` and users) clips Gaussian actions like the evaluation does."""
    agent = symrl.load(diverged_run[0])  # its policy mean is far outside Pendulum's [-2, 2]
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    env.close()
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype)), action


# --------------------------------------------------------------------------------------------------
# save -> load -> same actions
# --------------------------------------------------------------------------------------------------

ROUND_TRIPS = {
    "cartpole": dict(algo="ppo", env="CartPole-v1", total_steps=256),
    "pendulum-bins5": dict(algo="ppo", env="Pendulum-v1", bins=5, total_steps=256, batch_size=64, n_epochs=2),
    "pendulum-gaussian-normobs": dict(algo="ppo", env="Pendulum-v1", bins=0, norm_obs=True, norm_reward=True,
                                      total_steps=256, batch_size=64, n_epochs=2),
    "pendulum-sa2c-bins5": dict(algo="sa2c", env="Pendulum-v1", bins=5, total_steps=256, n_steps=8),
}


def _observations(env: gym.Env, n: int) -> np.ndarray:
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    batch = []
    for _ in range(n):
        batch.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(batch)


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_save_load_same_actions(tmp_path, name):
    settings = {**API_TINY, **ROUND_TRIPS[name]}
    result = symrl.train(out=tmp_path / "run", **settings)
    trained = result.agent
    loaded = [symrl.load(tmp_path / "run"), symrl.load(tmp_path / "run" / runs.MODEL)]

    env = loaded[0].make_env()
    obs = _observations(env, 64)
    expected = trained.act(obs, deterministic=True)
    for agent in loaded:
        np.testing.assert_array_equal(agent.act(obs, deterministic=True), expected)
        # a single observation: a batch of one goes through another BLAS kernel (matrix-vector), which may round the
        # last bit of a Gaussian mean differently; discrete actions compare exactly
        np.testing.assert_allclose(agent.act(obs[3], deterministic=True), expected[3], rtol=1e-6, atol=1e-6)
        assert agent.config == trained.config
        for (k1, v1), (k2, v2) in zip(trained.policy.state_dict().items(), agent.policy.state_dict().items(), strict=True):
            assert k1 == k2 and torch.equal(v1, v2), k1
        np.testing.assert_array_equal(agent.obs_norm.rms.mean, trained.obs_norm.rms.mean)
        np.testing.assert_array_equal(agent.obs_norm.rms.var, trained.obs_norm.rms.var)
        assert agent.obs_norm.rms.count == trained.obs_norm.rms.count
        assert agent.obs_norm.enabled == trained.obs_norm.enabled

    if settings.get("norm_obs"):
        assert trained.obs_norm.enabled and trained.obs_norm.rms.count > 256
        assert np.any(trained.obs_norm.rms.mean != 0)
    if settings.get("bins"):
        assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
        assert list(env.action_space.nvec) == [settings["bins"]]
        assert env.action_space.contains(expected[0])
    env.step(expected[0])  # the loaded agent's actions are accepted by make_env()'s environment
    env.close()


# --------------------------------------------------------------------------------------------------
# atomic writes, weights-only checkpoints
# --------------------------------------------------------------------------------------------------


def test_atomic_write_text_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "dir" / "file.txt"  # parents are created
    runs.atomic_write_text(target, "first")
    assert target.read_text() == "first"
    runs.atomic_write_text(target, "second, longer content\n" * 100)
    assert target.read_text() == "second, longer content\n" * 100
    runs.atomic_write_text(target, "")
    assert target.read_text() == ""
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_files_are_as_readable_as_ordinary_ones(tmp_path):
    """mkstemp makes its file private (0600); a run's config or model on shared storage must not be."""
    old = os.umask(0o022)
    try:
        runs.atomic_write_text(tmp_path / "status.json", "{}")
        (tmp_path / "plain.txt").write_text("")
    finally:
        os.umask(old)
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644


def test_status_json_holds_null_for_nan(tmp_path):
    runs.write_status(tmp_path, "finished", step=256, final_return=float("nan"))
    assert json.loads((tmp_path / runs.STATUS).read_text(), parse_constant=lambda name: pytest.fail(name)) == {
        "state": "finished", "step": 256, "final_return": None}


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.txt"
    runs.atomic_write_text(target, "good")
    with pytest.raises(TypeError):
        runs.atomic_write_bytes(target, "not bytes")  # fails inside the write
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_torch_save_round_trip_and_corrupt_file(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "n": 3, "rng": torch.get_rng_state(),
           "big": {"state": 2**127 + 12345}}
    path = tmp_path / "x.pt"
    runs.atomic_torch_save(obj, path)
    back = runs.safe_torch_load(path)
    assert torch.equal(back["w"], obj["w"]) and back["n"] == 3 and back["big"] == obj["big"]
    path.write_bytes(b"garbage" * 50)
    with pytest.raises(SymrlError, match="corrupt"):
        runs.safe_torch_load(path)
    with pytest.raises(SymrlError, match="does not exist"):
        runs.safe_torch_load(tmp_path / "missing.pt")


def test_run_files_load_weights_only(tmp_path):
    out = tmp_path / "run"
    symrl.train(algo="sppo", env="CartPole-v1", total_steps=512, reward_noise="flip:0.1", adv_noise="flip:0.1",
                out=out, **API_TINY)
    ckpt = torch.load(out / runs.CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"config", "policy", "obs_norm", "optimizer", "reward_norm", "counters", "evaluations", "rng"} <= set(ckpt)
    assert ckpt["counters"]["global_step"] == 512
    assert [e["step"] for e in ckpt["evaluations"]] == [256, 512]
    model = torch.load(out / runs.MODEL, map_location="cpu", weights_only=True)
    assert {"config", "policy", "obs_norm"} <= set(model)
    assert model["config"]["algo"] == "sppo"
    assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------------------------------
# reproducibility
# --------------------------------------------------------------------------------------------------

NOISY = dict(algo="sppo", env="CartPole-v1", total_steps=512, reward_noise="gaussian:0.1", adv_noise="flip:0.1")


def _logs(run_dir: Path) -> tuple[list[dict], list[dict]]:
    metrics = [{k: v for k, v in row.items() if k not in ("time", "sps")} for row in read_rows(run_dir / runs.METRICS)]
    return metrics, read_rows(run_dir / runs.EVAL)


def test_same_seed_same_results_different_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        symrl.train(out=tmp_path / name, seed=seed, **NOISY, **API_TINY)
    a, b, c = (_logs(tmp_path / n) for n in "abc")
    assert len(a[0]) == 4 and len(a[1]) == 2
    assert a == b
    assert a[0] != c[0]
    assert (tmp_path / "a" / runs.MODEL).read_bytes() != (tmp_path / "c" / runs.MODEL).read_bytes()
    sa = torch.load(tmp_path / "a" / runs.MODEL, weights_only=True)["policy"]
    sb = torch.load(tmp_path / "b" / runs.MODEL, weights_only=True)["policy"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_with_steps_below_the_checkpoint_is_refused(tmp_path, capsys):
    """--steps smaller than the step already reached is a user error; the run's files stay untouched."""
    out = tmp_path / "run"
    train_cartpole(out, 1024)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code = main(["train", "--resume", "--out", str(out), "--steps", "512", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "1024" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_run_killed_after_its_last_checkpoint_resumes_as_finished(tmp_path):
    """--steps 200 with 128-step rollouts ends at 256; a kill before the "finished" status leaves a checkpoint
    past --steps, which is the finished run, not an error."""
    out = tmp_path / "run"
    train_cartpole(out, 200)
    model = torch.load(out / runs.MODEL, weights_only=True)["policy"]
    (out / runs.MODEL).unlink()
    runs.write_status(out, "running", step=256)
    assert cli(["train", "--resume", "--out", out, "--no-progress"]) == 0
    assert runs.read_status(out)["state"] == "finished" and runs.read_status(out)["step"] == 256
    again = torch.load(out / runs.MODEL, weights_only=True)["policy"]
    assert all(torch.equal(model[k], again[k]) for k in model)
    assert [int(r["step"]) for r in read_rows(out / runs.METRICS)] == [128, 256]


def test_extending_a_run_drops_its_old_final_model_until_the_new_one(tmp_path, monkeypatch):
    """A killed extension must not leave the shorter run's model.pt, which Agent.load would prefer."""
    out = tmp_path / "run"
    train_cartpole(out, 512)
    old_model = (out / runs.MODEL).read_bytes()

    def killed(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "update", killed)
    assert cli(["train", "--resume", "--out", out, "--steps", 1024, "--no-progress"]) != 0
    monkeypatch.undo()
    assert not (out / runs.MODEL).exists() and runs.read_status(out)["state"] == "interrupted"
    resume(out, 1024)
    assert (out / runs.MODEL).read_bytes() != old_model and runs.read_status(out)["step"] == 1024


def test_the_first_run_in_a_process_starts_from_the_same_weights_as_a_later_one():
    """A small MLP's run sets PyTorch to one thread; weights initialised before that (orthogonal init uses a
    threaded QR) came out different in the last bits for the first run of a process only."""
    before = torch.get_num_threads()
    if before < 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores")
    cfg = symrl.make_config("a2c", "HalfCheetah-v4", n_envs=1, eval_episodes=0, progress=False, tensorboard=False)
    try:
        torch.set_num_threads(2)  # a fresh process's default on 2 cores
        first = symrl.Trainer(cfg)
        later = symrl.Trainer(cfg)
        for (name, a), b in zip(first.policy.state_dict().items(), later.policy.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
        first.envs.close()
        later.envs.close()
    finally:
        torch.set_num_threads(before)


def test_linear_schedules_count_the_rollout_just_collected_as_stable_baselines3_does(tmp_path):
    """SB3 updates its progress after collecting a rollout: update k of n runs at 1 - k/n of the initial values."""
    symrl.train(algo="ppo", env="CartPole-v1", total_steps=4 * ROLLOUT, lr_schedule="linear", clip_schedule="linear",
                learning_rate=1e-3, clip_range=0.2, out=tmp_path / "run", **{**API_TINY, "eval_episodes": 0})
    rows = read_rows(tmp_path / "run" / runs.METRICS)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])
    assert [float(r["clip_range"]) for r in rows] == pytest.approx([0.15, 0.1, 0.05, 0.0])


def test_resume_overrides_compare_with_the_resolved_config_not_strings():
    """A setting given again with the run's value is accepted (numbers by value, noise specs by kind and number); a
    different one is refused, also for fields a run's file predates (their default is the run's value)."""
    saved = {"total_steps": 50000, "reward_noise": "gaussian:0.05", "reverse_mask": "ppo", "preset": None, "gamma": 0.99}
    assert runs.resume_overrides(saved, {"total_steps": 5e4, "reward_noise": "gaussian:0.050", "gamma": 0.99},
                                 may_change=set()) == {}
    assert runs.resume_overrides(saved, {"total_steps": 80000}, may_change={"total_steps"}) == {"total_steps": 80000}
    for given in ({"reverse_mask": "none"}, {"preset": "none"}, {"reward_noise": "flip:0.05"}, {"gamma": "0.99"}):
        with pytest.raises(SymrlError, match="cannot change"):
            runs.resume_overrides(saved, given, may_change=set())


def test_a_failed_resume_releases_the_run_lock(tmp_path):
    """A Trainer that fails after taking the run's lock (here: a checkpoint that does not fit) lets it go."""
    import symrl
    from symrl.trainer import Trainer, resume_config

    out = tmp_path / "run"
    symrl.train(algo="ppo", env="CartPole-v1", out=out, total_steps=128, n_steps=64, n_envs=2, eval_episodes=0,
                progress=False, tensorboard=False)
    torch.save({"counters": {"global_step": 0}}, out / runs.CHECKPOINT)
    with pytest.raises(SymrlError):
        Trainer(resume_config(out), out=out, resume=True)
    assert out.absolute() not in runs._HELD


def test_a_resume_reads_the_checkpoint_once_under_the_lock_and_a_bad_one_builds_nothing(tmp_path, monkeypatch):
    """The checkpoint a resume continues from is read once, while the run's lock is held (so it is what the lock's
    last holder left), and a checkpoint beyond the budget is refused before any environment is made."""
    from symrl import trainer as trainer_module
    from symrl.trainer import resume_config

    out = tmp_path / "run"
    symrl.train(algo="ppo", env="CartPole-v1", out=out, total_steps=128, n_steps=64, n_envs=2, eval_episodes=0,
                progress=False, tensorboard=False)
    reads, made = [], []
    load, make_envs = runs.safe_torch_load, trainer_module.make_train_envs
    monkeypatch.setattr(runs, "safe_torch_load", lambda path: reads.append(out.absolute() in runs._HELD) or load(path))
    monkeypatch.setattr(trainer_module, "make_train_envs", lambda cfg: made.append(cfg) or make_envs(cfg))
    Trainer(resume_config(out, total_steps=256), out=out, resume=True).run()
    assert reads == [True] and len(made) == 1
    reads.clear(), made.clear()
    with pytest.raises(SymrlError, match="already at step 256"):
        Trainer(resume_config(out, total_steps=64), out=out, resume=True)
    assert reads == [True] and made == [] and out.absolute() not in runs._HELD


def test_the_run_lock_dies_with_its_holder_not_with_the_workers_it_forked(tmp_path):
    """A run forks environment workers; killed, it must not leave its folder locked while they wind down (a SIGKILLed
    run's `--resume` was refused as 'another symrl process is training')."""
    code = ("import os, sys, time\nfrom symrl import runs\n"
            f"runs.RunLock({str(tmp_path)!r}).acquire()\n"
            "if os.fork() == 0:  # an env worker: outlives its parent for a few seconds\n"
            "    parent = os.getppid()\n    while os.getppid() == parent:\n        time.sleep(0.05)\n"
            "    time.sleep(5)\n    os._exit(0)\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert not runs.RunLock(tmp_path).acquire(blocking_error=False)  # held
        holder.kill()
        holder.wait(timeout=30)
        lock = runs.RunLock(tmp_path)
        assert lock.acquire(blocking_error=False)  # the forked child still runs, the lock is free
        lock.release()
    finally:
        holder.kill()


def test_both_kinds_of_run_share_one_protocol(tmp_path):
    """Sweeps, results and the CLI read a run through symrl.runs.RunConfig: its kind, the field that is its budget,
    the fields a resume may change, and its file round trip; a saved mapping says its kind by env or task."""
    import dataclasses

    from symrl.config import Config, make_config
    from symrl.rlhf.config import RLHFConfig

    for config in (make_config("ppo", "CartPole-v1", total_steps=2048), RLHFConfig(task="arithmetic", iterations=3)):
        fields = {f.name for f in dataclasses.fields(config)}
        assert config.BUDGET in fields and set(config.RESUMABLE) <= fields
        assert runs.run_kind(config) == runs.run_kind(config.to_dict()) == config.KIND
        runs.write_config(tmp_path, config.to_dict())
        assert type(config).from_file(tmp_path / runs.CONFIG) == config
    assert (Config.KIND, RLHFConfig.KIND) == ("gym", "rlhf")
    assert runs.run_kind({"env": "CartPole-v1"}) is None and runs.run_kind({"name": "mine"}) is None


def test_a_huge_config_yaml_in_out_is_refused_before_it_is_parsed(tmp_path):
    """A run folder's config.yaml is read with the same bounds as presets and sweep files: a file of megabytes is
    not a run's config (refused by its size, not parsed), and a resume says it cannot read it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / runs.CONFIG).write_text("algo: ppo\nenv: CartPole-v1\nnotes: " + "x" * 1_200_000 + "\n")
    with pytest.raises(SymrlError, match="is not a symrl run's config"):
        runs.check_out(folder, overwrite=True)
    from symrl.config import read_config_mapping

    with pytest.raises(SymrlError, match="cannot read .*config.yaml"):
        read_config_mapping(folder / runs.CONFIG)
