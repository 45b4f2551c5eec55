"""PPO and symmetric PPO: several epochs of shuffled minibatches, advantages normalised per minibatch."""

from __future__ import annotations

import numpy as np
import torch

from ..advantages import normalize_advantages, sign_change_ratio
from ..config import Config
from ..losses import symmetric_ppo_loss
from ..policies import ActorCritic
from .common import Batch, mean_action_prob, optimizer_step, value_loss


def ppo_update(
    policy: ActorCritic, optimizer: torch.optim.Optimizer, batch: Batch, cfg: Config, clip_range: float
) -> dict:
    n = len(batch)
    batch_size = cfg.batch_size or n
    logs: dict[str, list] = {}
    for _epoch in range(cfg.n_epochs):
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            mb = batch[order[start : start + batch_size]]
            log_prob, entropy, values = policy.evaluate(mb.obs, mb.actions)
            advantages = mb.advantages
            sign_changed = float("nan")
            if cfg.normalize_advantage and len(mb) > 1:
                normalized = normalize_advantages(advantages)
                sign_changed = sign_change_ratio(advantages, normalized).item()
                advantages = normalized

            pg = symmetric_ppo_loss(
                log_prob, mb.old_log_prob, advantages, clip_range=clip_range,
                alpha=cfg.alpha, beta=cfg.beta, z=cfg.z, variant=cfg.loss_variant,
                reverse_mask=cfg.reverse_mask, per_dim_reverse=cfg.per_dim_reverse,
            )
            v_loss = value_loss(values, mb.old_values, mb.returns, cfg.clip_range_vf)
            entropy_mean = entropy.mean()
            loss = cfg.policy_coef * pg.loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy_mean
            grad_norm = optimizer_step(policy, optimizer, loss, cfg.max_grad_norm)

            for key, value in (
                ("loss", loss), ("policy_loss", pg.loss), ("rl_loss", pg.rl_loss),
                ("reverse_loss", pg.reverse_loss), ("value_loss", v_loss), ("entropy", entropy_mean),
                ("clip_fraction", pg.clip_fraction), ("approx_kl", pg.approx_kl),
                ("active_fraction", pg.active_fraction), ("sign_change_ratio", sign_changed),
                ("grad_norm", grad_norm), ("action_prob", mean_action_prob(log_prob)),
            ):
                logs.setdefault(key, []).append(float(value.detach()) if torch.is_tensor(value) else value)
    return {key: float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan") for key, values in logs.items()}
