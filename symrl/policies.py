"""Actor-critic networks and their action distributions.

Action heads: categorical (Discrete), factorised categorical (MultiDiscrete, which includes Box
discretised into K bins per dimension) and diagonal Gaussian (Box). For factorised policies the
log-probability has a trailing action-dimension axis ``[B, D]``; the joint log-probability is its sum
(what the losses use by default). Bodies: MLP or the Nature CNN (uint8 frames scaled by 1/255 inside the
network), shared between actor and critic or separate.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from .config import Config
from .errors import SymrlError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _ortho(module: nn.Module, gain: float) -> nn.Module:
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
    return module


def image_layout(shape: tuple) -> tuple[int, int, int, bool]:
    """``(channels, height, width, channels_last)`` of an image observation: [C, H, W] as symrl's Atari
    stack makes them, or [H, W, C] with 1, 3 or 4 channels as Gymnasium's pixel tasks (CarRacing) give them."""
    if len(shape) != 3:
        raise SymrlError(f"network=cnn needs image observations [C, H, W] or [H, W, C], got shape {shape}")
    if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return shape[2], shape[0], shape[1], True
    return shape[0], shape[1], shape[2], False


class NatureCNN(nn.Module):
    """Mnih et al. (2015): 32x8x8/4, 64x4x4/2, 64x3x3/1, FC 512, on frames stacked as channels."""

    MIN_SIZE = 36  # the smallest image its three convolutions fit

    def __init__(self, in_channels: int, height: int, width: int, channels_last_input: bool = False):
        super().__init__()
        if min(height, width) < self.MIN_SIZE:
            raise SymrlError(f"network=cnn (the Nature CNN) needs images of at least {self.MIN_SIZE}x{self.MIN_SIZE} "
                             f"pixels, got {height}x{width}; use network=mlp (e.g. for MinAtar's 10x10 grids)")
        self.channels_last_input = channels_last_input  # [N, H, W, C] observations, viewed as [N, C, H, W]
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n_flat, 512), nn.ReLU())
        self.out_dim = 512

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # channels-last (NHWC) frames: oneDNN's faster convolution path on a CPU; the values, and so
        # the algorithm, are unchanged. The rollout buffer stores frames channels-last already, so for
        # minibatches this is a plain element-wise conversion.
        if self.channels_last_input:
            obs = obs.permute(0, 3, 1, 2)  # a view, already laid out channels-last
        frames = obs.to(dtype=torch.float32, memory_format=torch.channels_last, copy=True).div_(255.0)
        return self.fc(self.conv(frames))


class MLP(nn.Module):
    def __init__(self, in_dim: int, arch: list[int], activation: str):
        super().__init__()
        layers: list[nn.Module] = []
        for size in arch:
            layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
            in_dim = size
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.flatten(1).float())


def uses_cnn(cfg: Config, obs_space: gym.Space) -> bool:
    if cfg.network != "auto":
        return cfg.network == "cnn"
    return isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 3 and obs_space.dtype == np.uint8


class ActorCritic(nn.Module):
    """Policy and value function for one observation space and one action space."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: Config):
        super().__init__()
        try:
            self._build(obs_space, action_space, cfg)
        except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as a RuntimeError
            if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
                raise
            raise SymrlError(f"the network does not fit in memory (net_arch={list(cfg.net_arch)}, network={cfg.network}); "
                             "use smaller layers, e.g. --set net_arch=[64,64]") from None

    def _build(self, obs_space: gym.Space, action_space: gym.Space, cfg: Config) -> None:
        if not isinstance(obs_space, gym.spaces.Box):
            raise SymrlError(f"observation space {obs_space} is not supported; symrl needs Box observations")
        self.kind = _action_kind(action_space)
        self.cnn = uses_cnn(cfg, obs_space)

        # ortho_init: false leaves every layer at PyTorch's default initialisation, as Stable-Baselines3 does
        init = _ortho if cfg.ortho_init else (lambda module, gain: module)

        def body() -> nn.Module:
            if self.cnn:
                channels, height, width, channels_last = image_layout(obs_space.shape)
                return init(NatureCNN(channels, height, width, channels_last), math.sqrt(2))
            return init(MLP(int(np.prod(obs_space.shape)), cfg.net_arch, cfg.activation), math.sqrt(2))

        self.actor_body = body()
        self.critic_body = self.actor_body if cfg.shared_network else body()
        # precision=bf16: the bodies (convolutions, hidden layers) under bfloat16 autocast
        self.autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
        self.shared = cfg.shared_network
        hidden = self.actor_body.out_dim

        if self.kind == "discrete":
            self.n_logits = int(action_space.n)
        elif self.kind == "multidiscrete":
            self.nvec = [int(n) for n in np.asarray(action_space.nvec).reshape(-1)]
            self.n_logits = sum(self.nvec)
            self.equal_bins = len(set(self.nvec)) == 1
        else:
            self.action_dim = int(np.prod(action_space.shape))
            self.n_logits = self.action_dim
            self.log_std = nn.Parameter(torch.full((self.action_dim,), float(cfg.log_std_init)))
            self.action_bounds = (action_space.low, action_space.high)
        if self.cnn:  # convolution weights in NHWC too (see NatureCNN.forward)
            self.actor_body.to(memory_format=torch.channels_last)
            self.critic_body.to(memory_format=torch.channels_last)
        self.action_head = init(nn.Linear(hidden, self.n_logits), 0.01)
        self.value_head = init(nn.Linear(self.critic_body.out_dim, 1), 1.0)

    # -- distributions -------------------------------------------------------------------------------
    def _run_body(self, body: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return body(obs)
        with torch.autocast(obs.device.type, dtype=self.autocast_dtype):
            return body(obs).float()  # the heads and the losses see float32 features

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actor = self._run_body(self.actor_body, obs)
        critic = actor if self.shared else self._run_body(self.critic_body, obs)
        return actor, critic

    def _dist(self, features: torch.Tensor):
        out = self.action_head(features)
        if self.kind == "discrete":
            return Categorical(logits=out)
        if self.kind == "multidiscrete":
            if self.equal_bins:
                return Categorical(logits=out.view(out.shape[0], len(self.nvec), self.nvec[0]))
            return [Categorical(logits=chunk) for chunk in torch.split(out, self.nvec, dim=1)]
        return Normal(out, self.log_std.exp().expand_as(out))

    def _log_prob_entropy(self, dist, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability ([B] or per-dimension [B, D]) and entropy [B] of ``actions``."""
        if self.kind == "discrete":
            return dist.log_prob(actions.long()), dist.entropy()
        if self.kind == "multidiscrete":
            if isinstance(dist, list):
                lp = torch.stack([d.log_prob(a) for d, a in zip(dist, actions.long().unbind(1), strict=True)], 1)
                ent = torch.stack([d.entropy() for d in dist], 1)
                return lp, ent.sum(1)
            return dist.log_prob(actions.long()), dist.entropy().sum(1)
        return dist.log_prob(actions).sum(1), dist.entropy().sum(1)

    def _sample(self, dist, deterministic: bool) -> torch.Tensor:
        if self.kind == "continuous":
            return dist.mean if deterministic else dist.sample()
        if isinstance(dist, list):
            return torch.stack([d.probs.argmax(-1) if deterministic else d.sample() for d in dist], 1)
        return dist.probs.argmax(-1) if deterministic else dist.sample()

    # -- public ----------------------------------------------------------------------------------------
    def act(self, obs: torch.Tensor, deterministic: bool = False):
        """Sample (or take the mode of) actions; returns ``(actions, log_prob, value)``."""
        actor, critic = self._features(obs.to(self.device))
        dist = self._dist(actor)
        actions = self._sample(dist, deterministic)
        log_prob, _ = self._log_prob_entropy(dist, actions)
        return actions, log_prob, self.value_head(critic).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """Log-probability, entropy and value of given ``actions`` (the update's forward pass)."""
        actor, critic = self._features(obs)
        log_prob, entropy = self._log_prob_entropy(self._dist(actor), actions)
        return log_prob, entropy, self.value_head(critic).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_head(self._run_body(self.critic_body, obs.to(self.device))).squeeze(-1)

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    @torch.inference_mode()
    def act_numpy(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions for a batch of (already normalised) NumPy observations, ready for the environment
        (Gaussian actions clipped to the Box bounds)."""
        obs_t = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)
        actions = self._sample(self._dist(self._run_body(self.actor_body, obs_t)), deterministic)
        return self.env_actions(actions.cpu().numpy())

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Sampled actions as the environment takes them: Gaussian actions clipped to the Box bounds."""
        return np.clip(actions, *self.action_bounds) if self.kind == "continuous" else actions


def _action_kind(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multidiscrete"
    if isinstance(space, gym.spaces.Box):
        return "continuous"
    raise SymrlError(
        f"action space {type(space).__name__} is not supported; symrl handles Discrete, MultiDiscrete and Box"
    )
