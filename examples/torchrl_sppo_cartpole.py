"""Symmetric PPO in a plain TorchRL training loop on CartPole-v1.

The only symrl line is the loss module: ``SymmetricClipPPOLoss`` is TorchRL's ``ClipPPOLoss`` with a
``loss_reverse`` output, so the usual ``sum of loss_*`` step trains the symmetric loss.

    python examples/torchrl_sppo_cartpole.py --frames 61440 --seed 0
"""

from __future__ import annotations

import argparse

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import GymEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives.value import GAE

from symrl.integrations.torchrl import SymmetricClipPPOLoss


def mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n_out))


def evaluate(env: GymEnv, actor: ProbabilisticActor, episodes: int) -> float:
    """Mean return of the most likely action over a few episodes."""
    returns = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(max_steps=500, policy=actor)
            returns.append(rollout["next", "reward"].sum().item())
    return sum(returns) / len(returns)


def train(frames: int = 61_440, seed: int = 0, frames_per_batch: int = 1024, epochs: int = 10, minibatch: int = 64,
          lr: float = 1e-3, alpha: float = 0.5, beta: float = 1.0, eval_every: int = 10_240, target: float = 475.0):
    """Train; return the list of (frames, mean evaluation return), stopping early once ``target`` is reached."""
    torch.manual_seed(seed)
    env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    env.set_seed(seed)
    eval_env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    eval_env.set_seed(seed + 10_000)
    n_obs, n_actions = env.observation_spec["observation"].shape[-1], env.action_spec.space.n

    actor = ProbabilisticActor(
        TensorDictModule(mlp(n_obs, n_actions), in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"], distribution_class=torch.distributions.Categorical, return_log_prob=True,
        spec=env.action_spec,
    )
    critic = ValueOperator(mlp(n_obs, 1), in_keys=["observation"])
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=False)
    loss_module = SymmetricClipPPOLoss(
        actor, critic, alpha=alpha, beta=beta, z=-1.0, clip_epsilon=0.2, normalize_advantage=True,
        entropy_coeff=0.0, critic_coeff=0.5, loss_critic_type="l2",
    )
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=lr)
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=frames,
                          auto_register_policy_transforms=False)

    history, seen = [], 0
    for data in collector:
        seen += data.numel()
        data = data.reshape(-1)
        for _ in range(epochs):
            with torch.no_grad():
                advantage(data)
            for idx in torch.randperm(data.numel()).split(minibatch):
                out = loss_module(data[idx])
                loss = sum(value for key, value in out.items() if key.startswith("loss_"))
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 0.5)
                optimizer.step()
        if seen % eval_every < frames_per_batch:
            history.append((seen, evaluate(eval_env, actor, episodes=5)))
            print(f"frames {seen:>7}  eval return {history[-1][1]:.1f}", flush=True)
            if history[-1][1] >= target:
                break
    collector.shutdown()
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=61_440)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train(args.frames, args.seed)
