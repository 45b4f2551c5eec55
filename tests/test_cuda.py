"""On a CUDA GPU; skipped where torch sees none (CI, laptops). Run on a GPU machine with
``pytest tests/test_cuda.py`` (``benchmarks/gpu_session.sh`` does, with the GPU benchmarks).

- One SPPO update from the same weights, rollout and minibatch order leaves the same parameters on the GPU
  as on the CPU (float32 with TF32 off), for an MLP and for the Nature CNN: the loss and the update do not
  depend on the device.
- An Atari run with ALE's vector env trains on the GPU in float32 and with bfloat16 bodies, evaluates and
  loads back.
- Symmetric PPO solves CartPole on the GPU.
- A resumed GPU run continues the GPU's random generator (the policy samples its actions with it).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import symrl
from symrl import runs
from symrl.algos import ppo_update
from symrl.config import make_config
from symrl.policies import ActorCritic
from symrl.trainer import Trainer, make_optimizer, resume_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_tf32():
    """Full float32 matrix products and convolutions on the GPU (TF32 rounds to 10 mantissa bits)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("env", ["CartPole-v1", "PongNoFrameskip-v4"])
def test_update_on_gpu_equals_update_on_cpu(env, no_tf32):
    cfg = make_config("sppo", env, n_envs=2, n_steps=64, batch_size=32, n_epochs=2, seed=0, engine="torch")
    trainer = Trainer(cfg)
    trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
    batch = trainer._batch()
    spaces = trainer.envs.single_observation_space, trainer.envs.single_action_space
    trainer.envs.close()
    results = []
    for device in ("cpu", "cuda"):
        policy = ActorCritic(*spaces, cfg).to(device)
        policy.load_state_dict(trainer.policy.state_dict())
        optimizer = make_optimizer(cfg, policy)
        on_device = type(batch)(*(t.to(device) for t in dataclasses.astuple(batch)))
        torch.manual_seed(1)  # the minibatch order (drawn on the CPU in both cases)
        logs = ppo_update(policy, optimizer, on_device, cfg, cfg.clip_range)
        results.append((logs, [p.detach().cpu() for p in policy.parameters()]))
    (cpu_logs, cpu_params), (gpu_logs, gpu_params) = results
    for key, value in cpu_logs.items():
        assert gpu_logs[key] == pytest.approx(value, rel=1e-3, abs=1e-5, nan_ok=True), key
    moved = max((p - q).abs().max().item() for p, q in zip(cpu_params, trainer.policy.parameters(), strict=True))
    assert moved > 1e-5  # the update did change the parameters
    for a, b in zip(gpu_params, cpu_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ale_backed_atari_run_on_gpu(tmp_path, precision):
    result = symrl.train(algo="sppo", env="BreakoutNoFrameskip-v4", vec_env="ale", n_envs=8, total_steps=2048,
                         eval_freq=2048, eval_episodes=2, device="cuda", precision=precision, progress=False,
                         out=tmp_path / "breakout")
    assert result.steps == 2048 and len(result.evaluations) == 1
    assert 0 <= result.final_return < 1000  # a real Breakout score from the Gymnasium evaluation env
    agent = symrl.load(tmp_path / "breakout")  # saved from the GPU, loaded on the CPU
    assert agent.policy.device.type == "cpu" and agent.config.precision == precision


def test_sppo_solves_cartpole_on_gpu():
    result = symrl.train(algo="sppo", env="CartPole-v1", total_steps=60_000, seed=0, stop_return=475.0,
                         device="cuda", progress=False, tensorboard=False)
    assert max(e["mean_return"] for e in result.evaluations) >= 475.0, result.evaluations


def test_resume_restores_the_gpu_generator(tmp_path):
    out = tmp_path / "run"
    symrl.train(algo="ppo", env="CartPole-v1", total_steps=256, n_steps=64, n_envs=2, eval_episodes=0, device="cuda",
                progress=False, tensorboard=False, out=out)
    saved = runs.safe_torch_load(out / runs.CHECKPOINT)["rng"]["cuda"]
    torch.cuda.manual_seed(12345)
    trainer = Trainer(resume_config(out, total_steps=512), out=out, resume=True)
    trainer.envs.close()
    assert torch.equal(torch.cuda.get_rng_state(), saved)
