"""The NumPy engine (symrl.fast) against the torch path on the same data.

The torch path (symrl.losses + autograd + torch.optim) is the reference. For every supported head,
body, loss variant and optimiser these tests check, on synthetic batches:
- the gradient of the full loss equals autograd's (before any optimiser, so a scale error cannot hide
  behind Adam's normalisation);
- the flat Adam / RMSprop steps equal torch.optim's, and the state they leave loads into torch.optim;
- a whole PPO / A2C update (epochs of shuffled minibatches) leaves the same parameters and logs;
- acting returns log-probabilities and values that the torch policy agrees with.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from symrl.advantages import normalize_advantages
from symrl.algos import a2c_update, ppo_update
from symrl.algos.common import Batch, value_loss
from symrl.config import Config
from symrl.fast import NumpyEngine, make_engine, supports
from symrl.losses import symmetric_a2c_loss, symmetric_ppo_loss
from symrl.policies import ActorCritic
from symrl.trainer import make_optimizer

OBS = gym.spaces.Box(-5.0, 5.0, (7,), np.float32)
SPACES = {
    "discrete": gym.spaces.Discrete(4),
    "bins": gym.spaces.MultiDiscrete([5, 5, 5]),
    "gaussian": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
}


def make_pair(kind: str, seed: int = 0, **cfg_kw):
    """Two identical policies with their optimisers; the second one driven by a NumpyEngine."""
    cfg = Config(net_arch=[16, 12], **cfg_kw)
    policies = []
    for _ in range(2):
        torch.manual_seed(seed)
        policy = ActorCritic(OBS, SPACES[kind], cfg)
        with torch.no_grad():  # a non-trivial std for the Gaussian head
            if kind == "gaussian":
                policy.log_std.copy_(torch.tensor([-0.3, 0.1, 0.4]))
        policies.append(policy)
    ref_opt, fast_opt = make_optimizer(cfg, policies[0]), make_optimizer(cfg, policies[1])
    engine = NumpyEngine(policies[1], fast_opt, np.random.default_rng(seed))
    return cfg, policies[0], ref_opt, engine


def make_batch(policy: ActorCritic, n: int = 48, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 7, generator=g)
    with torch.no_grad():
        actions, log_prob, values = policy.act(obs)
    # old log-probs away from the current ones, so some ratios leave [1 - eps, 1 + eps]
    old = log_prob + 0.3 * torch.randn(log_prob.shape, generator=g)
    adv = torch.randn(n, generator=g) * 2.0
    returns = values + torch.randn(n, generator=g)
    old_values = values + 0.3 * torch.randn(n, generator=g)
    return Batch(obs, actions, old, old_values, adv, returns)


def torch_loss(policy, batch, cfg, clip_range):
    """The full loss of the torch path (as symrl.algos builds it) on one minibatch."""
    log_prob, entropy, values = policy.evaluate(batch.obs, batch.actions)
    adv = normalize_advantages(batch.advantages) if cfg.normalize_advantage else batch.advantages
    common = dict(alpha=cfg.alpha, beta=cfg.beta, z=cfg.z, variant=cfg.loss_variant, per_dim_reverse=cfg.per_dim_reverse)
    if clip_range is None:
        pg = symmetric_a2c_loss(log_prob, adv, **common)
        v_loss = value_loss(values, batch.old_values, batch.returns, None)
    else:
        pg = symmetric_ppo_loss(log_prob, batch.old_log_prob, adv, clip_range=clip_range,
                                reverse_mask=cfg.reverse_mask, **common)
        v_loss = value_loss(values, batch.old_values, batch.returns, cfg.clip_range_vf)
    return cfg.policy_coef * pg.loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean()


def numpy_grad(engine: NumpyEngine, batch: Batch, cfg, clip_range):
    """The engine's gradient on ``batch`` without applying it (the optimiser step is intercepted)."""
    captured = {}

    def capture(grad, max_grad_norm):
        captured["grad"] = grad.copy()
        return 0.0

    engine.opt.step = capture
    arrays, cols = engine._arrays(batch)
    row = engine._step(*arrays, cfg, clip_range, cols)
    return captured["grad"], row


CASES = [
    # (head, loss settings)
    ("discrete", dict(algo="ppo")),
    ("discrete", dict(algo="sppo", alpha=0.5, beta=1.0, z=-1.0, ent_coef=0.01)),
    ("discrete", dict(algo="sppo", alpha=0.3, beta=2.0, z=-1.5, loss_variant="mae", reverse_mask="none")),
    ("bins", dict(algo="sppo", alpha=0.5, beta=20.0, ent_coef=0.02, clip_range_vf=0.2)),
    ("bins", dict(algo="sppo", alpha=0.5, beta=3.0, per_dim_reverse=True, reverse_mask="none")),
    ("bins", dict(algo="ppo", shared_network=True, activation="relu", policy_coef=1.7)),
    ("gaussian", dict(algo="ppo", ent_coef=0.05)),
    ("gaussian", dict(algo="ppo", clip_range_vf=0.1, shared_network=True, normalize_advantage=False)),
    ("discrete", dict(algo="a2c", normalize_advantage=False)),
    ("discrete", dict(algo="sa2c", alpha=0.5, beta=1.0, ent_coef=0.01, normalize_advantage=True)),
    ("bins", dict(algo="sa2c", alpha=0.5, beta=5.0, per_dim_reverse=True, loss_variant="mae")),
    ("gaussian", dict(algo="a2c", activation="relu", shared_network=True)),
]


def _ids(case):
    kind, kw = case
    return kind + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_gradient_equals_autograd(case):
    kind, kw = case
    cfg, ref, _, engine = make_pair(kind, **kw)
    clip_range = None if cfg.family == "a2c" else 0.2
    batch = make_batch(ref)
    loss = torch_loss(ref, batch, cfg, clip_range)
    ref.zero_grad()
    loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).numpy()
    got, row = numpy_grad(engine, batch, cfg, clip_range)
    assert row["loss"] == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-6)
    assert np.abs(expected).max() > 1e-3  # the comparison is not vacuous


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "rmsprop_tf"])
def test_flat_optimizer_equals_torch_optim_and_hands_its_state_over(kind):
    torch.manual_seed(0)
    cfg = Config(optimizer=kind, learning_rate=1e-2, net_arch=[8])
    ref = ActorCritic(OBS, SPACES["discrete"], cfg)
    fast = ActorCritic(OBS, SPACES["discrete"], cfg)
    fast.load_state_dict(ref.state_dict())
    ref_opt, fast_opt = make_optimizer(cfg, ref), make_optimizer(cfg, fast)
    engine = NumpyEngine(fast, fast_opt, np.random.default_rng(0))
    g = torch.Generator().manual_seed(3)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=g) * (10.0 if step == 2 else 0.1) for p in ref.parameters()]
        for p, gr in zip(ref.parameters(), grads, strict=True):
            p.grad = gr.clone()
        norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        ref_opt.step()
        got_norm = engine.opt.step(torch.cat([gr.reshape(-1) for gr in grads]).numpy(), 0.5)
        assert got_norm == pytest.approx(norm.item(), rel=1e-5)
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the torch optimiser, after sync, holds the same state and continues identically
    engine.opt.sync()
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        sa, sb = ref_opt.state[a], fast_opt.state[b]
        assert set(sa) == set(sb)
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=1e-5, atol=1e-7)
    restored = make_optimizer(cfg, fast)
    restored.load_state_dict(fast_opt.state_dict())
    for opt, model in ((ref_opt, ref), (restored, fast)):
        for p in model.parameters():
            p.grad = torch.ones_like(p) * 1e-3
        opt.step()
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4], CASES[6], CASES[9], CASES[10]], ids=_ids)
def test_whole_update_equals_torch_path(case):
    kind, kw = case
    cfg, ref, ref_opt, engine = make_pair(kind, **kw)
    cfg = cfg.replace(n_epochs=3, batch_size=16, max_grad_norm=0.5, learning_rate=1e-3)
    batch = make_batch(ref)
    torch.manual_seed(7)
    if cfg.family == "ppo":
        expected = ppo_update(ref, ref_opt, batch, cfg, 0.2)
        torch.manual_seed(7)  # the engine draws the same minibatch order
        got = engine.ppo_update(batch, cfg, 0.2)
    else:
        expected = a2c_update(ref, ref_opt, batch, cfg)
        got = engine.a2c_update(batch, cfg)
    assert set(got) == set(expected)
    for key, value in expected.items():
        if np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for a, b in zip(ref.parameters(), engine.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", list(SPACES))
@pytest.mark.parametrize("shared", [False, True])
def test_acting_agrees_with_the_torch_policy(kind, shared):
    cfg, ref, _, engine = make_pair(kind, shared_network=shared)
    obs = np.random.default_rng(0).standard_normal((32, 7)).astype(np.float32)
    actions, log_prob, values = engine.act(obs)
    with torch.no_grad():
        expected_lp, _, expected_v = ref.evaluate(torch.from_numpy(obs), torch.from_numpy(np.asarray(actions)))
        mode, _, _ = ref.act(torch.from_numpy(obs), deterministic=True)
    np.testing.assert_allclose(log_prob, expected_lp.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values, expected_v.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(engine.value(obs), expected_v.numpy(), rtol=1e-5, atol=1e-6)
    det, _, _ = engine.act(obs, deterministic=True)
    np.testing.assert_allclose(det, mode.numpy(), rtol=1e-5, atol=1e-6)
    if kind != "gaussian":  # sampled actions cover the action space
        many, _, _ = engine.act(np.zeros((4000, 7), np.float32))
        assert len(np.unique(many)) == (4 if kind == "discrete" else 5)


def test_acting_sees_parameter_updates():
    cfg, ref, _, engine = make_pair("discrete")
    obs = np.zeros((1, 7), np.float32)
    _, _, before = engine.act(obs)
    batch = make_batch(ref)
    engine.ppo_update(batch, cfg.replace(batch_size=16), 0.2)
    _, _, after = engine.act(obs)
    with torch.no_grad():
        expected = engine.policy.value(torch.from_numpy(obs)).numpy()
    assert after[0] != before[0]
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)


def test_unsupported_policies_fall_back_to_torch():
    cfg = Config(network="cnn")
    frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    policy = ActorCritic(frames, SPACES["discrete"], cfg)
    assert supports(policy) == "the policy uses a CNN"
    assert make_engine(cfg, policy, make_optimizer(cfg, policy), np.random.default_rng(0)) is None
    uneven = ActorCritic(OBS, gym.spaces.MultiDiscrete([3, 5]), Config())
    assert "different sizes" in supports(uneven)
    mlp = ActorCritic(OBS, SPACES["discrete"], Config())
    assert make_engine(Config(engine="torch"), mlp, make_optimizer(Config(), mlp), np.random.default_rng(0)) is None
    from symrl.errors import SymrlError

    with pytest.raises(SymrlError, match="engine=numpy cannot run this policy"):
        make_engine(Config(engine="numpy"), policy, make_optimizer(cfg, policy), np.random.default_rng(0))


def test_mean_action_prob_is_the_mean_joint_probability():
    from symrl.algos.common import mean_action_prob

    per_dim = torch.log(torch.tensor([[0.5, 0.5], [0.2, 1.0]]))
    assert mean_action_prob(per_dim) == pytest.approx((0.25 + 0.2) / 2)
    assert mean_action_prob(torch.log(torch.tensor([0.1, 0.3]))) == pytest.approx(0.2)


# Each setting that changes an update, with a value away from the base below. Both paths must follow every one of
# them alike; a setting one path reads and the other ignores fails here. A new UpdateSettings field must be added.
PERTURBED = {
    "n_epochs": 1, "batch_size": 24, "normalize_advantage": False, "alpha": 0.8, "beta": 2.0, "z": -2.0,
    "loss_variant": "mae", "reverse_mask": "none", "per_dim_reverse": True, "policy_coef": 1.5, "vf_coef": 0.9,
    "ent_coef": 0.05, "max_grad_norm": 0.05, "clip_range_vf": 0.1,
}
PPO_ONLY = {"n_epochs", "batch_size", "reverse_mask", "clip_range_vf"}


def test_every_update_setting_is_perturbed():
    from symrl.algos.update import UpdateSettings

    assert set(PERTURBED) == {f.name for f in dataclasses.fields(UpdateSettings)}


def _updated(family: str, **changes):
    """Parameters after one update of the torch path and of the engine, from the same start on the same batch."""
    cfg, ref, ref_opt, engine = make_pair("bins", algo="sppo" if family == "ppo" else "sa2c", alpha=0.5, beta=1.0,
                                          z=-1.0, ent_coef=0.01)
    cfg = cfg.replace(**{"n_epochs": 2, "batch_size": 16, "max_grad_norm": 0.5, "learning_rate": 1e-3, **changes})
    batch = make_batch(ref)
    torch.manual_seed(7)
    if family == "ppo":
        ppo_update(ref, ref_opt, batch, cfg, 0.2)
        torch.manual_seed(7)
        engine.ppo_update(batch, cfg, 0.2)
    else:
        a2c_update(ref, ref_opt, batch, cfg)
        engine.a2c_update(batch, cfg)
    flat = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in (ref, engine.policy)]
    return flat[0], flat[1]


@pytest.mark.parametrize("family", ["ppo", "a2c"])
@pytest.mark.parametrize("field", list(PERTURBED))
def test_each_update_setting_changes_both_paths_alike(family, field):
    base_torch, base_numpy = _updated(family)
    torch_path, numpy_engine = _updated(family, **{field: PERTURBED[field]})
    torch.testing.assert_close(numpy_engine, torch_path, rtol=1e-4, atol=1e-6)
    changed = (torch_path - base_torch).abs().max().item()
    if family == "a2c" and field in PPO_ONLY:
        assert changed == 0.0 and torch.equal(numpy_engine, base_numpy), f"A2C read the PPO setting {field}"
    else:
        assert changed > 1e-6, f"{field} changed nothing in the {family} update"


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_deterministic_evaluation_through_the_engine_plays_the_torch_policys_actions(kind: str) -> None:
    from symrl.evaluation import _actions

    _, policy, _, engine = make_pair(kind)  # policy: the torch twin of the engine's (same weights)
    obs = np.random.default_rng(0).normal(size=(64, 7)).astype(np.float32) * 3
    state = engine.rng.bit_generator.state
    fast = _actions(engine.policy, engine, obs, deterministic=True)
    expected = policy.act_numpy(obs, deterministic=True)
    assert fast.shape == expected.shape
    if kind == "gaussian":  # the clipped means, to float rounding
        np.testing.assert_allclose(fast, expected, atol=1e-5)
        assert np.all(np.abs(fast) <= 1.0)
    else:
        np.testing.assert_array_equal(fast, expected)
    assert engine.rng.bit_generator.state == state  # training's random stream is untouched


def test_evaluation_with_the_engine_gives_the_same_returns_on_a_real_environment() -> None:
    from symrl.envs.normalize import ObsNormalizer
    from symrl.evaluation import evaluate, make_eval_envs

    cfg = Config(env="CartPole-v1", net_arch=[16, 12])
    envs = make_eval_envs(cfg, 3)
    torch.manual_seed(3)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg)
    engine = NumpyEngine(policy, make_optimizer(cfg, policy), np.random.default_rng(0))
    norm = ObsNormalizer(envs.single_observation_space.shape, enabled=False)
    with_engine = evaluate(policy, envs, norm, 6, True, seed=11, engine=engine)
    without = evaluate(policy, envs, norm, 6, True, seed=11)
    envs.close()
    np.testing.assert_array_equal(with_engine, without)
    assert len(set(with_engine.tolist())) > 1  # episodes differ: a real comparison, not 6 copies of one number


@pytest.mark.parametrize("bins", [1, 2, 3, 7, 8, 11])
def test_short_axis_reductions_equal_numpys(bins):
    """The unrolled reductions over a categorical head's bins give NumPy's values (bitwise below SHORT_AXIS)."""
    from symrl.fast.mlp import SHORT_AXIS, _cumsum_last, _reduce_last  # noqa: PLC0415

    x = np.random.default_rng(bins).standard_normal((33, 2, bins)).astype(np.float32)
    exact = bins < SHORT_AXIS
    for got, want in ((_reduce_last(np.maximum, x), x.max(-1)), (_reduce_last(np.add, x), x.sum(-1)),
                      (_cumsum_last(x), x.cumsum(-1)), (_reduce_last(np.add, (x > 0).astype(np.int64)), (x > 0).sum(-1))):
        assert got.shape == want.shape
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_the_critic_in_a_worker_process_gives_the_same_parameters():
    """A separate critic's passes in the engine's worker process (minibatches of WORKER_ROWS or more): the same
    arithmetic on the same numbers through shared memory, so bit for bit the parameters of one process."""
    import symrl  # noqa: PLC0415
    from symrl.fast import WORKER_ROWS  # noqa: PLC0415

    weights = []
    for worker in (False, True):
        cfg = symrl.make_config("ppo", "CartPole-v1", n_envs=8, n_steps=WORKER_ROWS // 8, batch_size=WORKER_ROWS,
                                n_epochs=2, total_steps=2 * WORKER_ROWS, eval_episodes=0, progress=False,
                                tensorboard=False, seed=4)
        trainer = symrl.Trainer(cfg)
        assert not trainer.policy.shared
        trainer.engine.close()
        trainer.engine = engine = NumpyEngine(trainer.policy, trainer.optimizer, trainer.policy_rng,
                                              critic_rows=WORKER_ROWS if worker else 0)
        trainer.run()  # closes the run: that stops the worker
        if worker:
            assert engine.critic.sent == 2 * (1 + 2)  # per update: the data, then two minibatches
            engine.critic.process.join(timeout=10)  # it exits on its own once told to
            assert not engine.critic.process.is_alive()
        else:
            assert engine.critic is None
        weights.append({k: v.clone() for k, v in trainer.policy.state_dict().items()})
    for name, a in weights[0].items():
        assert torch.equal(a, weights[1][name]), name


def test_a_stopped_critic_worker_is_a_clear_error():
    import symrl  # noqa: PLC0415
    from symrl.errors import SymrlError  # noqa: PLC0415
    from symrl.fast import WORKER_ROWS  # noqa: PLC0415

    cfg = symrl.make_config("ppo", "CartPole-v1", n_envs=8, n_steps=WORKER_ROWS // 8, batch_size=WORKER_ROWS,
                            n_epochs=1, total_steps=3 * WORKER_ROWS, eval_episodes=0, progress=False, tensorboard=False)
    trainer = symrl.Trainer(cfg)
    trainer.engine.close()
    trainer.engine = engine = NumpyEngine(trainer.policy, trainer.optimizer, trainer.policy_rng, critic_rows=WORKER_ROWS)
    update = engine.ppo_update

    def update_then_kill(*args):
        result = update(*args)
        engine.critic.process.kill()
        engine.critic.process.join()
        return result

    engine.ppo_update = update_then_kill
    with pytest.raises(SymrlError, match="critic's worker process"):
        trainer.run()
    trainer.close()


def test_make_engine_starts_the_critic_worker_only_where_it_pays():
    """2+ cores, PPO, minibatches of WORKER_ROWS or more and a separate critic: a worker; anything less: none."""
    import symrl  # noqa: PLC0415
    from symrl.fast import WORKER_ROWS  # noqa: PLC0415
    from symrl.policies import ActorCritic  # noqa: PLC0415

    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    cases = [(dict(algo="ppo", batch_size=WORKER_ROWS), 2, True), (dict(algo="ppo", batch_size=WORKER_ROWS), 1, False),
             (dict(algo="ppo", batch_size=WORKER_ROWS // 2), 2, False), (dict(algo="a2c"), 2, False),
             (dict(algo="ppo", batch_size=WORKER_ROWS, shared_network=True), 2, False)]
    for overrides, cores, expected in cases:
        cfg = symrl.make_config(env="CartPole-v1", n_envs=8, n_steps=WORKER_ROWS // 8, **overrides)
        policy = ActorCritic(space, gym.spaces.Discrete(2), cfg)
        engine = make_engine(cfg, policy, make_optimizer(cfg, policy), np.random.default_rng(0), cores)
        assert (engine.critic is not None) == expected, (overrides, cores)
        engine.close()
