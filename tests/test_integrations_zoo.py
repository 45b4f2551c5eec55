"""symrl.integrations.rl_zoo: SA2C / SPPO trained by RL Baselines3 Zoo from symrl's hyperparameter files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rl_zoo3")

from symrl.integrations.rl_zoo import HYPERPARAMS, _zoo_args  # noqa: E402
from symrl.integrations.sb3 import SA2C, SPPO  # noqa: E402


def _zoo(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symrl.integrations.rl_zoo", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("algo", "cls", "env", "steps"), [
    ("sppo", SPPO, "CartPole-v1", "512"),
    ("sa2c", SA2C, "Hopper-v4", "64"),  # a Box task: the file discretises it with DiscretizeAction
])
def test_zoo_trains_and_saves_a_loadable_model(tmp_path, algo, cls, env, steps):
    result = _zoo("train", "--algo", algo, "--env", env, "-n", steps, "-f", str(tmp_path), "--seed", "0",
                  "--hyperparams", "beta:3.0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / algo / f"{env}_1"
    model = cls.load(run / f"{env}.zip")
    assert (model.alpha, model.beta, model.z) == (0.5, 3.0, -1.0)
    assert "- - beta" in (run / env / "config.yml").read_text()  # the Zoo's record of the run


def test_hyperparameter_files_are_safe_yaml_with_symmetric_settings():
    for algo in ("sppo", "sa2c"):
        table = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
        for env, params in table.items():
            assert params["z"] < 0 and "alpha" in params and "beta" in params, env


CONTINUOUS = ["HalfCheetah-v4", "Ant-v4", "Hopper-v4", "Walker2d-v4", "Swimmer-v4", "InvertedDoublePendulum-v4",
              "Humanoid-v4", "HumanoidStandup-v4", "BipedalWalker-v3", "LunarLanderContinuous-v3"]


@pytest.mark.parametrize("algo", ["sppo", "sa2c"])
def test_hyperparameter_files_agree_with_symrls_presets(algo):
    """Every MuJoCo and Box2D task of SPEC 4 is in the Zoo file, with the settings `symrl train` gives it."""
    from symrl.config import make_config  # noqa: PLC0415

    table = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
    for env in CONTINUOUS:
        params, cfg = table[env], make_config(algo, env)
        bins = params["env_wrapper"][0]["symrl.envs.wrappers.DiscretizeAction"]["bins"]
        zoo = (params["alpha"], params["beta"], params["z"], bins, params["n_timesteps"], params["n_envs"],
               params["n_steps"], params["learning_rate"], params["gamma"], params["ent_coef"])
        ours = (cfg.alpha, cfg.beta, cfg.z, cfg.bins, cfg.total_steps, cfg.n_envs, cfg.n_steps, cfg.learning_rate,
                cfg.gamma, cfg.ent_coef)
        assert zoo == ours, env
        if algo == "sppo":
            assert (params["batch_size"], params["n_epochs"], params["clip_range"]) == \
                (cfg.batch_size, cfg.n_epochs, cfg.clip_range), env
            kwargs = params.get("policy_kwargs", "")
            assert ("ortho_init=False" in kwargs) == (not cfg.ortho_init), env
            assert ("nn.ReLU" in kwargs) == (cfg.activation == "relu"), env


def test_atari_sa2c_and_sppo_use_the_zoo_a2c_and_ppo_optimiser_and_network_settings():
    """The symmetric algorithms differ from the Zoo's A2C/PPO on Atari by the loss only (A2C: RMSpropTFLike)."""
    import rl_zoo3  # noqa: PLC0415

    zoo = Path(rl_zoo3.__file__).parent / "hyperparams"
    for ours, theirs in (("sa2c", "a2c"), ("sppo", "ppo")):
        mine = yaml.safe_load((HYPERPARAMS / f"{ours}.yml").read_text())["atari"]
        reference = yaml.safe_load((zoo / f"{theirs}.yml").read_text())["atari"]
        assert mine.get("policy_kwargs") == reference.get("policy_kwargs"), ours


def test_conf_file_is_added_only_when_missing():
    assert _zoo_args(["--algo", "sppo", "--env", "CartPole-v1"])[-2:] == ["--conf-file", str(HYPERPARAMS / "sppo.yml")]
    assert "--conf-file" not in _zoo_args(["--algo", "ppo", "--env", "CartPole-v1"])
    assert _zoo_args(["--algo", "sa2c", "-conf", "mine.yml"]) == ["--algo", "sa2c", "-conf", "mine.yml"]


def test_unknown_command_prints_usage(tmp_path):
    result = _zoo("fly", cwd=tmp_path)
    assert result.returncode != 0 and "usage:" in result.stderr
