"""Critic-free GRPO and RLOO (and their symmetric forms) in symrl.rlhf on a real tiny transformer: the group
baselines and the loss aggregations against hand computations, one update's loss against a transcription of
SPEC 1 with group advantages, the symmetric form against its rescaled control, learning, resume and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_lm import tiny_gpt2, tiny_tokenizer  # noqa: E402

from symrl.errors import SymrlError  # noqa: E402
from symrl.losses import aggregate_tokens  # noqa: E402
from symrl.rlhf import RLHFConfig, RLHFTrainer  # noqa: E402
from symrl.rlhf.advantages import group_advantages  # noqa: E402
from symrl.rlhf.tasks import make_rlhf_config  # noqa: E402

PROMPTS = ["the movie was", "it is", "the plot", "i", "a film and the movie was very"]
CFG = dict(batch_size=16, minibatch_size=8, epochs=2, learning_rate=3e-4, max_new_tokens=8, top_k=0, kl_coef=0.05,
           group_size=4)


def _good_fraction(prompts, responses):
    return [response.split().count("good") / 8 for response in responses]


# -- group baselines and aggregation, by hand ------------------------------------------------------------------

def test_group_advantages_match_hand_computation():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0])
    # GRPO: (s - group mean) / (group std, unbiased); a group with equal scores gets 0
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]) / torch.tensor([std + 1e-6] * 4 + [1e-6] * 4)
    torch.testing.assert_close(group_advantages(scores, 4, "grpo", "group"), expected)
    # RLOO: s minus the mean of the other three
    loo = torch.tensor([1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 0, 0, 0, 0])
    torch.testing.assert_close(group_advantages(scores, 4, "rloo", "none"), loo)
    torch.testing.assert_close(group_advantages(scores, 4, "grpo", "batch"),
                               torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]) / (scores.std() + 1e-6))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(scores, 3)


def test_loss_aggregation_modes_match_hand_computation():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate_tokens(values, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_tokens(values, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_tokens(values, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate_tokens(values, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / (2 * 3))
    assert aggregate_tokens(values, mask, "seq-mean-token-sum-norm", norm=5).item() == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_tokens(values, mask, "sum")


# -- the trainer -------------------------------------------------------------------------------------------

def _transcribed_loss(cfg: RLHFConfig, batch, logp: torch.Tensor) -> torch.Tensor:
    """SPEC 1 on tokens, written out: alpha * PPO + beta * reverse (authors' mask), aggregated by the mode, times
    policy_coef; plus the k3 KL term."""
    mask = batch.response_mask.float()
    adv, old = batch.advantages, batch.old_logprobs
    ratio = (logp - old).exp()
    surrogate, clipped = ratio * adv, ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range) * adv
    active = ((ratio >= 1 - cfg.clip_range) & (ratio <= 1 + cfg.clip_range)) | (surrogate <= clipped)
    ppo = -torch.min(surrogate, clipped)
    reverse = -cfg.z * adv * (1 - logp.exp()) / old.exp() * (active.float() if cfg.reverse_mask == "ppo" else 1.0)
    per_token = (cfg.alpha * ppo + cfg.beta * reverse) * mask
    if cfg.loss_agg_mode == "token-mean":
        policy = per_token.sum() / mask.sum()
    else:  # seq-mean-token-mean
        policy = (per_token.sum(1) / mask.sum(1)).mean()
    k3 = ((batch.ref_logprobs - logp).exp() - (batch.ref_logprobs - logp) - 1) * mask
    kl = k3.sum() / mask.sum() if cfg.loss_agg_mode == "token-mean" else (k3.sum(1) / mask.sum(1)).mean()
    return cfg.policy_coef * policy + cfg.kl_coef * kl


@pytest.mark.parametrize("algo, extra", [
    ("sgrpo", dict(alpha=0.5, beta=0.4, loss_agg_mode="token-mean")),
    ("srloo", dict(alpha=0.3, beta=1.0, reverse_mask="none", loss_agg_mode="seq-mean-token-mean", policy_coef=2.0)),
])
def test_one_update_is_the_transcribed_symmetric_loss_with_group_advantages(algo, extra):
    cfg = RLHFConfig(algo=algo, kl_mode="loss", **{**CFG, "minibatch_size": 16, "epochs": 1}, **extra)
    trainer = RLHFTrainer(cfg, tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS)
    assert trainer.value_model is None and len(trainer.trained_parameters) == len(list(trainer.policy.parameters()))
    batch, stats = trainer.rollout()
    # four responses per prompt, in a row; every token of a response carries the response's group advantage
    prompts = batch.sequences[:, :batch.prompt_length]
    assert all(torch.equal(prompts[i], prompts[i - i % 4]) for i in range(16))
    scores = torch.tensor(_good_fraction(None, trainer.tokenizer.batch_decode(batch.responses, skip_special_tokens=True)))
    expected = group_advantages(scores, 4, "grpo" if algo == "sgrpo" else "rloo", cfg.reward_scaling)
    mask = batch.response_mask.float()
    torch.testing.assert_close(batch.advantages, expected[:, None] * mask)
    assert stats["flat_groups"] == pytest.approx(float((scores.reshape(4, 4).std(1) == 0).float().mean()))
    from symrl.rlhf.generation import score

    with torch.no_grad():
        logp = score(trainer.policy, batch, trainer.sampling)[0]
    expected_loss = _transcribed_loss(cfg, batch, logp)
    logs = trainer.update(batch)
    assert logs["loss"] == pytest.approx(float(expected_loss), rel=1e-4, abs=1e-6)
    assert "value_loss" not in logs and np.isnan(logs["sign_change_ratio"])  # not measured: no normalisation


def test_kl_in_the_reward_enters_each_response_score_before_the_baseline():
    cfg = RLHFConfig(algo="rloo", kl_mode="reward", **{**CFG, "kl_coef": 0.5})
    trainer = RLHFTrainer(cfg, tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS)
    with torch.no_grad():  # a reference unlike the policy, so the KL is not 0
        for p in trainer.reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch, _ = trainer.rollout()
    mask = batch.response_mask.float()
    scores = torch.tensor(_good_fraction(None, trainer.tokenizer.batch_decode(batch.responses, skip_special_tokens=True)))
    rewards = scores - 0.5 * ((batch.old_logprobs - batch.ref_logprobs) * mask).sum(1)
    torch.testing.assert_close(batch.advantages, group_advantages(rewards, 4, "rloo", "none")[:, None] * mask)
    assert "kl_loss" not in trainer.update(batch)


def test_symmetric_grpo_with_the_authors_mask_trains_as_grpo_scaled_by_c():
    """SPEC 1.1: alpha 0.5, beta 1, z -1 (c = 1.5) has GRPO-with-policy_coef-1.5's gradient, so the same seed
    trains to the same parameters; without the mask it does not."""
    def train(**overrides) -> list[torch.Tensor]:
        settings = {**CFG, "epochs": 4, "learning_rate": 1e-3}  # enough steps that tokens leave the clip range
        trainer = RLHFTrainer(RLHFConfig(iterations=2, kl_mode="loss", **settings, **overrides), tiny_gpt2(),
                              tiny_tokenizer(), _good_fraction, PROMPTS)
        assert max(row["clip_fraction"] for row in trainer.run()) > 0.05
        return [p.detach().clone() for p in trainer.policy.parameters()]

    symmetric = train(algo="sgrpo", alpha=0.5, beta=1.0, z=-1.0)
    scaled = train(algo="grpo", policy_coef=1.5)
    unmasked = train(algo="sgrpo", alpha=0.5, beta=1.0, z=-1.0, reverse_mask="none")
    assert max((a - b).abs().max().item() for a, b in zip(symmetric, scaled, strict=True)) < 5e-5
    assert max((a - b).abs().max().item() for a, b in zip(symmetric, unmasked, strict=True)) > 5e-3


@pytest.mark.slow
def test_short_grpo_run_raises_a_programmatic_reward():
    cfg = RLHFConfig(algo="grpo", iterations=12, kl_mode="loss", **{**CFG, "batch_size": 32, "epochs": 4})
    history = RLHFTrainer(cfg, tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS).run()
    first, last = history[0]["score"], sum(r["score"] for r in history[-3:]) / 3
    assert last > first + 0.15, [round(r["score"], 3) for r in history]


def test_critic_free_run_resumes_like_an_uninterrupted_one(tmp_path):
    cfg = dict(algo="sgrpo", alpha=0.5, beta=0.4, checkpoint_every=2, **CFG)
    straight = RLHFTrainer(RLHFConfig(iterations=4, **cfg), tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS).run()
    RLHFTrainer(RLHFConfig(iterations=2, **cfg), tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS, out=tmp_path).run()
    rest = RLHFTrainer(RLHFConfig(iterations=4, **cfg), tiny_gpt2(), tiny_tokenizer(), _good_fraction, PROMPTS,
                       out=tmp_path, resume=True).run()
    for a, b in zip(straight[2:], rest[-2:], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_presets_give_critic_free_algorithms_groups_and_the_symmetric_ones_their_weights():
    cfg = make_rlhf_config("sentiment", "sgrpo")
    assert (cfg.group_size, cfg.kl_mode, cfg.alpha, cfg.beta, cfg.reward_scaling) == (4, "loss", 0.5, 0.4, "group")
    assert make_rlhf_config("sentiment", "rloo").reward_scaling == "none"
    assert make_rlhf_config("sentiment", "ppo").group_size == 1


@pytest.mark.parametrize("overrides, message", [
    (dict(algo="grpo", group_size=1), "group_size 1 is too small"),
    (dict(algo="rloo", group_size=3, batch_size=16, minibatch_size=8), "multiple of group_size"),
    (dict(algo="ppo", scale_rewards="group"), "scale_rewards applies to grpo/rloo only"),
    (dict(algo="grpo", group_size=4, loss_agg_mode="sum"), "loss_agg_mode must be one of"),
    (dict(algo="grpo", group_size=4, kl_mode="both"), "kl_mode must be one of"),
    (dict(algo="dpo"), "algo must be one of"),
])
def test_bad_critic_free_settings_name_the_field(overrides, message):
    with pytest.raises(SymrlError, match=message):
        RLHFConfig(**overrides).validate()
