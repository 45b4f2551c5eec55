"""Tests of config resolution: family presets (SPEC section 4), overrides, --set parsing, validation and
the config.yaml round trip of a run directory.
"""

from __future__ import annotations

import dataclasses

import pytest

from symrl import runs
from symrl.config import Config, detect_family, load_config_file, make_config, parse_set
from symrl.errors import SymrlError


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    """Run in a temporary directory: building MuJoCo envs appends warnings to ./MUJOCO_LOG.TXT."""
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------------------------------
# presets


def _fields(cfg: Config, **expected):
    """Assert that ``cfg`` has the ``expected`` field values (floats compared approximately)."""
    got = {k: getattr(cfg, k) for k in expected}
    for key, want in expected.items():
        if isinstance(want, float):
            assert got[key] == pytest.approx(want), key
        else:
            assert got[key] == want, key


@pytest.mark.parametrize(
    "env_id, family",
    [
        ("CartPole-v1", "classic"),
        ("Pendulum-v1", "classic"),
        ("HalfCheetah-v4", "mujoco"),
        ("LunarLanderContinuous-v3", "box2d"),
        ("PongNoFrameskip-v4", "atari"),
        ("ALE/Breakout-v5", "atari"),
    ],
)
def test_detect_family(env_id, family):
    """The preset family comes from the environment's entry point."""
    assert detect_family(env_id) == family
    assert make_config("ppo", env_id).preset == family


def test_cartpole_classic_preset():
    """CartPole resolves the classic preset with its MLP and PPO settings."""
    cfg = make_config("ppo", "CartPole-v1")
    _fields(
        cfg,
        algo="ppo",
        env="CartPole-v1",
        preset="classic",
        network="mlp",
        net_arch=[64, 64],
        n_envs=8,
        bins=0,
        norm_obs=False,
        norm_reward=False,
        sign_reward=False,
    )


def test_mujoco_ppo_preset_matches_spec():
    """HalfCheetah-v4 PPO: the authors' MuJoCo values of SPEC section 4."""
    cfg = make_config("ppo", "HalfCheetah-v4")
    _fields(
        cfg,
        preset="mujoco",
        n_envs=1,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        learning_rate=3e-4,
        lr_schedule="constant",
        clip_range=0.2,
        clip_schedule="constant",
        gamma=0.99,
        gae_lambda=0.95,
        vf_coef=0.5,
        ent_coef=0.0,
        max_grad_norm=0.5,
        normalize_advantage=True,
        optimizer="adam",
        norm_obs=True,
        norm_reward=True,
        net_arch=[64, 64],
        activation="tanh",
        shared_network=False,
        ortho_init=True,
        bins=0,
        alpha=1.0,
        beta=0.0,
        total_steps=2_000_000,
        eval_freq=5000,
        eval_episodes=10,
        eval_deterministic=True,
    )


def test_mujoco_a2c_preset_matches_spec():
    """HalfCheetah-v4 A2C: 4 envs x 8 steps, RMSprop 7e-4, GAE 1.0, full batch, no advantage normalisation."""
    cfg = make_config("a2c", "HalfCheetah-v4")
    _fields(
        cfg,
        n_envs=4,
        n_steps=8,
        optimizer="rmsprop",
        optimizer_eps=1e-5,
        learning_rate=7e-4,
        gae_lambda=1.0,
        gamma=0.99,
        batch_size=None,
        n_epochs=1,
        vf_coef=0.5,
        ent_coef=0.0,
        max_grad_norm=0.5,
        normalize_advantage=False,
        norm_obs=True,
        norm_reward=True,
    )


def test_atari_ppo_preset_matches_spec():
    """Atari PPO: 8 envs x 128 steps, batch 256, 4 epochs, lr 2.5e-4 and clip 0.1 linear, ent 0.01."""
    cfg = make_config("ppo", "PongNoFrameskip-v4")
    _fields(
        cfg,
        preset="atari",
        n_envs=8,
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        learning_rate=2.5e-4,
        lr_schedule="linear",
        clip_range=0.1,
        clip_schedule="linear",
        gamma=0.99,
        gae_lambda=0.95,
        vf_coef=0.5,
        ent_coef=0.01,
        max_grad_norm=0.5,
        normalize_advantage=True,
        optimizer="adam",
        network="cnn",
        shared_network=True,
        sign_reward=True,
        episodic_life=True,
        frame_stack=4,
        noop_max=30,
        norm_obs=False,
        norm_reward=False,
        total_steps=5_000_000,
        eval_freq=10_000,
        eval_episodes=10,
        eval_deterministic=False,
    )


def test_atari_a2c_preset_matches_spec():
    """Atari A2C: 16 envs x 5 steps, RMSprop 7e-4 eps 1e-5, GAE 1.0, vf 0.25, ent 0.01, no adv. norm."""
    cfg = make_config("a2c", "BreakoutNoFrameskip-v4")
    _fields(
        cfg,
        n_envs=16,
        n_steps=5,
        batch_size=None,
        n_epochs=1,
        optimizer="rmsprop_tf",  # TensorFlow-like, as the authors (rl-zoo3 a2c.yml)
        optimizer_eps=1e-5,
        learning_rate=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        vf_coef=0.25,
        ent_coef=0.01,
        max_grad_norm=0.5,
        normalize_advantage=False,
    )


@pytest.mark.parametrize("algo", ["sppo", "sa2c"])
def test_atari_symmetric_preset(algo):
    """Symmetric variants on Atari: alpha 0.5, beta 1, Z -1, no discretisation."""
    cfg = make_config(algo, "PongNoFrameskip-v4")
    _fields(cfg, alpha=0.5, beta=1.0, z=-1.0, bins=0)


@pytest.mark.parametrize("algo", ["sppo", "sa2c"])
def test_mujoco_symmetric_preset(algo):
    """Symmetric variants on MuJoCo: 11 bins, alpha 0.5, beta 20, Z -1 (the authors' Ant DSPPO values)."""
    cfg = make_config(algo, "HalfCheetah-v4")
    _fields(cfg, bins=11, alpha=0.5, beta=20.0, z=-1.0)


@pytest.mark.parametrize("algo", ["sppo", "sa2c"])
def test_box2d_symmetric_preset(algo):
    """Box2D's continuous tasks, discretised, take the MuJoCo values (beta 20: the authors ran Box2D with their MuJoCo
    settings); discrete LunarLander beta 1, from the preset's per-environment section of the symmetric algorithm."""
    for env in ("BipedalWalker-v3", "LunarLanderContinuous-v3"):
        _fields(make_config(algo, env), bins=11, alpha=0.5, beta=20.0, z=-1.0)
    _fields(make_config(algo, "LunarLander-v3"), bins=0, alpha=0.5, beta=1.0, z=-1.0)
    _fields(make_config(algo.removeprefix("s"), "LunarLander-v3"), beta=0.0)  # a per-task beta is not PPO's or A2C's


def test_symmetric_preset_bins_apply_to_box_only():
    """sppo on CartPole (Discrete) keeps bins 0; on Pendulum (Box) the preset's 11 bins apply."""
    _fields(make_config("sppo", "CartPole-v1"), bins=0, alpha=0.5, beta=1.0)
    _fields(make_config("sppo", "Pendulum-v1"), bins=11)
    _fields(make_config("sppo", "LunarLander-v3"), bins=0)
    _fields(make_config("sppo", "LunarLanderContinuous-v3"), bins=11)


def test_symmetric_preset_bins_follow_user_env_kwargs():
    """Preset bins follow the action space that the user's env_kwargs actually produce."""
    assert make_config("sppo", "LunarLander-v3", env_kwargs={"continuous": True}).bins == 11


def test_humanoid_ppo_override():
    """Humanoid-v4 PPO uses the per-environment override of SPEC section 4."""
    cfg = make_config("ppo", "Humanoid-v4")
    _fields(
        cfg,
        net_arch=[256, 256],
        activation="relu",
        n_steps=512,
        batch_size=256,
        n_epochs=5,
        learning_rate=3.5e-5,
        gamma=0.95,
        ent_coef=0.002,
        clip_range=0.3,
        log_std_init=-2.0,
        n_envs=1,
        gae_lambda=0.95,
    )


def test_humanoid_override_is_ppo_only():
    """The Humanoid override does not touch A2C, and other MuJoCo envs keep the family values."""
    _fields(
        make_config("a2c", "Humanoid-v4"), net_arch=[64, 64], activation="tanh", learning_rate=7e-4, gamma=0.99, log_std_init=0.0
    )
    _fields(make_config("ppo", "Hopper-v4"), net_arch=[64, 64], learning_rate=3e-4, log_std_init=0.0)
    _fields(make_config("ppo", "Walker2d-v4"), total_steps=5_000_000)


# ---------------------------------------------------------------------------------------------------
# overrides and --set


def test_overrides_win_over_presets():
    """Keyword overrides replace preset values, including symmetric and per-environment ones."""
    cfg = make_config("sppo", "Humanoid-v4", n_steps=1024, learning_rate=1e-3, beta=3.0, bins=7, net_arch=[32], gamma=0.999)
    _fields(cfg, n_steps=1024, learning_rate=1e-3, beta=3.0, bins=7, net_arch=[32], gamma=0.999, batch_size=256, alpha=0.5)
    _fields(make_config("sppo", "CartPole-v1", bins=5), bins=5)
    _fields(make_config("ppo", "PongNoFrameskip-v4", n_envs=2, sign_reward=False), n_envs=2, sign_reward=False)


def test_explicit_preset_overrides_family():
    """preset= picks another family's preset for an environment."""
    cfg = make_config("ppo", "CartPole-v1", preset="mujoco")
    _fields(cfg, preset="mujoco", n_envs=1, n_steps=2048, norm_obs=True)


def test_preset_from_yaml_file(tmp_path):
    """A YAML file path works as a preset; its sections resolve like the packaged ones."""
    path = tmp_path / "mine.yaml"
    path.write_text("common: {n_envs: 3}\nppo: {n_steps: 77}\na2c: {n_steps: 9}\nenvs:\n  CartPole:\n    ppo: {gamma: 0.9}\n")
    _fields(make_config("ppo", "CartPole-v1", preset=str(path)), n_envs=3, n_steps=77, gamma=0.9, preset=str(path))
    _fields(make_config("a2c", "CartPole-v1", preset=str(path)), n_envs=3, n_steps=9, gamma=0.99)


@pytest.mark.parametrize("text", ["common: [1, 2\n", "- just\n- a list\n"])
def test_bad_preset_file(tmp_path, text):
    """A preset file that is not valid YAML or not a mapping raises SymrlError."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SymrlError):
        make_config("ppo", "CartPole-v1", preset=str(path))


def test_parse_set_types():
    """--set values are typed from the field: float, list, int from '1e6', bool, null."""
    out = parse_set(
        [
            "gamma=0.98",
            "net_arch=[128,128]",
            "total_steps=1e6",
            "norm_obs=true",
            "batch_size=null",
            "reward_noise=flip:0.1",
            "env_kwargs={max_episode_steps: 5}",
            "learning_rate=3e-4",
            "n_envs=4",
        ]
    )
    assert out == {
        "gamma": 0.98,
        "net_arch": [128, 128],
        "total_steps": 1_000_000,
        "norm_obs": True,
        "batch_size": None,
        "reward_noise": "flip:0.1",
        "env_kwargs": {"max_episode_steps": 5},
        "learning_rate": 3e-4,
        "n_envs": 4,
    }
    assert type(out["gamma"]) is float and type(out["total_steps"]) is int
    assert type(out["learning_rate"]) is float and type(out["n_envs"]) is int
    cfg = make_config("ppo", "CartPole-v1", **out)
    _fields(cfg, gamma=0.98, net_arch=[128, 128], total_steps=1_000_000, batch_size=None)


@pytest.mark.parametrize("item, value", [("norm_obs=1", True), ("norm_obs=0", False)])
def test_parse_set_bool_digits(item, value):
    """--set accepts 1 / 0 for a bool field, as _coerce's accepted strings intend."""
    assert parse_set([item]) == {"norm_obs": value}


def test_parse_set_bool_words():
    """--set reads true/false/yes/no for a bool field."""
    assert parse_set(["norm_obs=true", "norm_reward=no", "sign_reward=Yes", "tensorboard=False"]) == {
        "norm_obs": True,
        "norm_reward": False,
        "sign_reward": True,
        "tensorboard": False,
    }


@pytest.mark.parametrize("item, close", [("gama=0.9", "gamma"), ("n_env=4", "n_envs"), ("lerning_rate=1", "learning_rate")])
def test_parse_set_unknown_key_suggests(item, close):
    """An unknown key raises SymrlError naming a close match."""
    with pytest.raises(SymrlError) as info:
        parse_set([item])
    assert close in str(info.value) and "did you mean" in str(info.value)


def test_make_config_unknown_key_suggests():
    """An unknown keyword override raises SymrlError naming a close match."""
    with pytest.raises(SymrlError, match="n_steps"):
        make_config("ppo", "CartPole-v1", n_step=64)


@pytest.mark.parametrize(
    "item", ["n_envs=abc", "n_envs=4.5", "bins=true", "norm_obs=maybe", "gamma=[1]", "net_arch=64", "n_envs=null", "gamma", "=3"]
)
def test_parse_set_wrong_type(item):
    """A value of the wrong type (or a missing '=') raises SymrlError."""
    with pytest.raises(SymrlError):
        parse_set([item])


# ---------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "overrides",
    [
        dict(total_steps=0),
        dict(n_envs=0),
        dict(n_steps=-1),
        dict(bins=1),
        dict(bins=-3),
        dict(z=0.0),
        dict(z=1.0),
        dict(algo="dqn"),
        dict(gae_lambda=1.5),
        dict(learning_rate=0.0),
        dict(batch_size=0),
        dict(net_arch=[]),
        dict(net_arch=[64, 0]),
        dict(optimizer="sgd"),
        dict(reward_noise="flip:2"),
        dict(adv_noise="gaussian:0.1"),
        dict(loss_variant="nll"),
        dict(vec_env="threads"),
    ],
)
def test_validate_rejects(overrides):
    """validate() raises SymrlError on values that cannot work."""
    with pytest.raises(SymrlError):  # a config is checked when it is built
        dataclasses.replace(Config(), **overrides).validate()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(max_grad_norm=-1.0), "max_grad_norm must be positive"),  # would turn clipping into gradient ascent
        (dict(max_grad_norm=0.0), "max_grad_norm must be positive"),
        (dict(vf_coef=-2.0), "vf_coef must be >= 0"),
        (dict(beta=-1.0), "beta must be >= 0"),
        (dict(policy_coef=-1.5), "policy_coef must be >= 0"),
        (dict(torch_threads=-1), "torch_threads must be >= 0"),
        (dict(seed=-1), "seed must be >= 0"),
        (dict(stop_return=float("nan")), "stop_return is nan"),
        (dict(ent_coef=float("nan")), "ent_coef is nan"),
        (dict(learning_rate=float("inf")), "learning_rate must be a positive finite number"),
        (dict(gamma=1.5), r"gamma \(the discount\) must lie in \(0, 1\]"),
        (dict(z=float("-inf")), "z .* must be negative"),
        (dict(clip_range_vf=0.0), "clip_range_vf must be positive"),
        (dict(frame_stack=0), "frame_stack must be >= 1"),
        (dict(noop_max=-1), "noop_max must be >= 0"),
        (dict(rmsprop_alpha=1.0), r"rmsprop_alpha .* must lie in \[0, 1\)"),
    ],
)
def test_validate_names_the_field_and_the_fix(overrides, message):
    with pytest.raises(SymrlError, match=message):
        dataclasses.replace(Config(), **overrides).validate()


def test_validate_accepts_infinite_limits():
    """inf means "no limit" for the clipping thresholds."""
    Config(max_grad_norm=float("inf"), clip_obs=float("inf"), clip_reward=float("inf"), stop_return=float("inf"),
           gamma=1.0, alpha=0.0).validate()


def test_validate_accepts_defaults_and_bins():
    """The defaults and bins 0 / 2 validate."""
    assert Config().validate() == Config()
    Config(bins=2).validate()
    Config(bins=0, reward_noise="gaussian:0.05", adv_noise="flip:0.1").validate()


def test_make_config_rejects_bad_values():
    """make_config raises SymrlError for an unknown algorithm, an unknown preset and invalid overrides."""
    with pytest.raises(SymrlError, match="algo"):
        make_config("dqn", "CartPole-v1")
    with pytest.raises(SymrlError, match="unknown preset"):
        make_config("ppo", "CartPole-v1", preset="nonexistent")
    with pytest.raises(SymrlError, match="total_steps"):
        make_config("ppo", "CartPole-v1", total_steps=0)
    with pytest.raises(SymrlError, match="bins"):
        make_config("ppo", "Pendulum-v1", bins=1)
    with pytest.raises(SymrlError, match="must be negative"):
        make_config("sppo", "CartPole-v1", z=0)


# ---------------------------------------------------------------------------------------------------
# config.yaml round trip


@pytest.mark.parametrize(
    "algo, env_id, overrides",
    [
        ("ppo", "CartPole-v1", {}),
        ("sppo", "PongNoFrameskip-v4", dict(reward_noise="flip:0.1", stop_return=18.5)),
        (
            "sa2c",
            "HalfCheetah-v4",
            dict(
                reward_noise="gaussian:0.05",
                adv_noise="flip:0.2",
                seed=7,
                env_kwargs={"max_episode_steps": 100},
                learning_rate=1.5e-5,
            ),
        ),
        ("ppo", "Humanoid-v4", dict(total_steps=1e6)),
    ],
)
def test_config_yaml_round_trip(tmp_path, algo, env_id, overrides):
    """runs.write_config then load_config_file gives back an equal Config."""
    cfg = make_config(algo, env_id, **overrides)
    runs.write_config(tmp_path, cfg.to_dict())
    loaded = load_config_file(tmp_path / runs.CONFIG)
    assert loaded == cfg
    for field in dataclasses.fields(Config):
        assert type(getattr(loaded, field.name)) is type(getattr(cfg, field.name)), field.name


def test_load_config_file_errors(tmp_path):
    """A missing, non-mapping or invalid config.yaml raises SymrlError."""
    with pytest.raises(SymrlError):
        load_config_file(tmp_path / "missing.yaml")
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SymrlError):
        load_config_file(path)
    path.write_text("algo: ppo\nn_envz: 3\n")
    with pytest.raises(SymrlError, match="n_envs"):
        load_config_file(path)
    path.write_text("algo: ppo\nbins: 1\n")
    with pytest.raises(SymrlError, match="bins"):
        load_config_file(path)


@pytest.mark.parametrize("ortho", [True, False])
def test_ortho_init_switches_every_layer(ortho):
    """ortho_init: orthogonal weights and zero biases everywhere (gain sqrt 2 in the bodies); off: PyTorch's
    defaults everywhere, bodies included (Stable-Baselines3's ortho_init=False; the authors' Humanoid)."""
    import gymnasium as gym  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from symrl.policies import ActorCritic  # noqa: PLC0415

    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (17,), np.float32)
    policy = ActorCritic(space, gym.spaces.Box(-1, 1, (6,), np.float32), Config(ortho_init=ortho, net_arch=[32, 32]))
    layers = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 6  # 2 + 2 hidden layers, the action and the value head
    for layer in layers:
        biases_zero = bool((layer.bias == 0).all())
        assert biases_zero == ortho, layer
    hidden = policy.actor_body.net[2].weight.detach()  # 32 x 32
    orthogonal = torch.allclose(hidden @ hidden.T, 2.0 * torch.eye(32), atol=1e-4)
    assert orthogonal == ortho


def test_humanoid_ppo_preset_has_no_orthogonal_init():
    assert make_config("ppo", "Humanoid-v4").ortho_init is False
    assert make_config("ppo", "HalfCheetah-v4").ortho_init is True


def test_a_config_is_checked_when_built_and_immutable():
    """One resolution: building a Config checks it (no later validate() needed) and nothing can change it
    afterwards; replace() returns a new, checked one; the noise specs are parsed once into typed values."""
    with pytest.raises(SymrlError, match="gamma"):
        Config(gamma=1.5)
    cfg = make_config("ppo", "CartPole-v1", reward_noise="gaussian:0.2", adv_noise="flip:0.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3
    assert (cfg.reward_noise_spec.kind, cfg.reward_noise_spec.value) == ("gaussian", 0.2)
    assert (cfg.adv_noise_spec.kind, cfg.adv_noise_spec.value) == ("flip", 0.1)
    assert cfg.reward_noise == "gaussian:0.2" and cfg.to_dict()["reward_noise"] == "gaussian:0.2"  # what config.yaml stores
    clean = cfg.replace(reward_noise=None, seed=3)
    assert clean.reward_noise_spec is None and clean.seed == 3 and cfg.seed == 0
    with pytest.raises(SymrlError, match="reward-noise"):
        cfg.replace(reward_noise="flip:2")


def test_the_env_family_is_decided_in_one_place():
    """The preset family and Atari's wrappers follow from one function of the env registry."""
    from symrl.envs.registry import env_family, is_atari

    assert env_family("CartPole-v1") == detect_family("CartPole-v1") == "classic"
    assert env_family("HalfCheetah-v4") == "mujoco" and env_family("LunarLander-v3") == "box2d"
    assert not is_atari(make_config("ppo", "CartPole-v1"))
    assert is_atari(make_config("ppo", "CartPole-v1", preset="atari"))  # the preset's protocol applies
