"""PPO and symmetric PPO: several epochs of shuffled minibatches, advantages normalised per minibatch."""

from __future__ import annotations

import torch

from ..losses import symmetric_ppo_loss
from ..policies import ActorCritic
from .common import Batch, mean_action_prob, optimizer_step, standardized, value_loss
from .update import UpdateSettings, mean_logs, minibatches


def ppo_update(
    policy: ActorCritic, optimizer: torch.optim.Optimizer, batch: Batch, settings: UpdateSettings, clip_range: float
) -> dict:
    """Epochs of minibatch steps on one rollout; ``settings`` may be the run's :class:`symrl.Config`."""
    s = UpdateSettings.of(settings)
    rows = []
    for index in minibatches(len(batch), s):
        mb = batch[index]
        log_prob, entropy, values = policy.evaluate(mb.obs, mb.actions)
        advantages, sign_changed = standardized(mb.advantages, s.normalizes(len(mb), ppo=True))

        pg = symmetric_ppo_loss(log_prob, mb.old_log_prob, advantages, clip_range=clip_range,
                                reverse_mask=s.reverse_mask, **s.loss_kwargs())
        v_loss = value_loss(values, mb.old_values, mb.returns, s.clip_range_vf)
        entropy_mean = entropy.mean()
        loss = s.total(pg.loss, v_loss, entropy_mean)
        grad_norm = optimizer_step(policy, optimizer, loss, s.max_grad_norm)

        rows.append({key: float(value.detach()) if torch.is_tensor(value) else value for key, value in (
            ("loss", loss), ("policy_loss", pg.loss), ("rl_loss", pg.rl_loss),
            ("reverse_loss", pg.reverse_loss), ("value_loss", v_loss), ("entropy", entropy_mean),
            ("clip_fraction", pg.clip_fraction), ("approx_kl", pg.approx_kl),
            ("active_fraction", pg.active_fraction), ("sign_change_ratio", sign_changed),
            ("grad_norm", grad_norm), ("action_prob", mean_action_prob(log_prob)),
        )})
    return mean_logs(rows)
