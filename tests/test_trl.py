"""symrl.integrations.trl with the real TRL (the test extra pins trl==1.16.0) on a tiny GPT-2 symrl builds itself.

(a) One training step's loss and gradients equal SPEC section 1 written out here in plain tensor ops, for each
supported loss_type (TRL's aggregation transcribed too), with and without the authors' mask and with TRL's KL term.
(b) With alpha + beta * |z| = 1 and the authors' mask, SymmetricGRPOTrainer ends at plain GRPOTrainer's parameters
(same seed, off-policy micro-batches, gradient accumulation, KL and entropy bonus); the unmasked form does not.
The options applied by multiplying TRL's per-token loss (entropy mask, off-policy mask, vLLM importance weights,
tool mask) are checked the same way on one call of the hook. (c) A short run of the example raises a
programmatic reward.
(d) Unsupported settings and TRL versions fail with a message naming the fix.
No downloads: the model and tokenizer are made here and saved to a temporary folder.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tiny_lm import WORDS, tiny_tokenizer  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from symrl.integrations.trl import (  # noqa: E402
    SUPPORTED_TRL_VERSIONS,
    SymmetricGRPOConfig,
    SymmetricGRPOTrainer,
    check_trl_version,
)

PROMPTS = ["the movie was", "it is a", "the plot is", "i and the", "a film", "not the", "very", "it was"]
MAX_LEN = 6


def good_reward(completions: list[str], **kwargs) -> list[float]:
    """The programmatic reward: how many times the completion says "good"."""
    return [float(text.split().count("good")) for text in completions]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 over tiny_lm's 16 words, without dropout, saved with its tokenizer (read like a hub model)."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(WORDS), n_positions=64, bos_token_id=1,
                        eos_token_id=1, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def _dataset(repeat: int = 4) -> Dataset:
    return Dataset.from_dict({"prompt": PROMPTS * repeat})


def _settings(out: Path, **overrides) -> dict:
    """TRL settings shared by the tests: 4 completions per prompt, micro-batches of 4, two micro-batches per
    generation (so the second is off-policy: ratios move and some tokens are clipped), lr large enough for that."""
    settings = dict(output_dir=str(out), per_device_train_batch_size=4, num_generations=4, generation_batch_size=8,
                    gradient_accumulation_steps=1, max_completion_length=MAX_LEN, learning_rate=0.05, max_steps=2,
                    logging_steps=1, report_to="none", bf16=False, use_cpu=True, seed=0, disable_dropout=True,
                    max_grad_norm=0.0, save_strategy="no", temperature=1.0, beta=0.0, loss_type="dapo")
    settings.update(overrides)
    return settings


class _Recorder(TrainerCallback):
    """Keeps the gradients of each optimizer step (after backward, before the optimizer)."""

    def __init__(self, trainer: SymmetricGRPOTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.trainer.records[-1]["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}


class RecordingTrainer(SymmetricGRPOTrainer):
    """The real SymmetricGRPOTrainer, keeping each micro-batch, the weights it was computed with and the loss."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[dict] = []
        self.add_callback(_Recorder(self))

    def _compute_loss(self, model, inputs):
        self.records.append({"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                             "inputs": {k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()}})
        loss = super()._compute_loss(model, inputs)
        self.records[-1]["loss"] = loss.detach().clone()
        return loss


# ---------------------------------------------------------------------------------------------------------------
# SPEC section 1 in plain tensor ops, with TRL 1.16's aggregation of each loss_type
# ---------------------------------------------------------------------------------------------------------------

def _token_log_probs(model, inputs) -> torch.Tensor:
    """log pi(token) of each completion token, from the model's logits (temperature 1)."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    length = inputs["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -length - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)


def spec_loss(log_p, old_log_p, adv, mask, *, alpha, beta, z, eps, authors_mask, loss_type, tokens_in_generation,
              steps_per_generation, kl_coef=0.0, ref_log_p=None):
    """alpha * L_PPO + beta * L_rPPO per token (SPEC 1), TRL's KL term, then TRL's aggregation of ``loss_type``."""
    a = adv[:, None]
    r = torch.exp(log_p - old_log_p)
    clipped = torch.clamp(r, 1 - eps, 1 + eps)
    l_ppo = -torch.minimum(r * a, clipped * a)
    m = (((r >= 1 - eps) & (r <= 1 + eps)) | (r * a <= clipped * a)).float() if authors_mask else torch.ones_like(r)
    l_rppo = -z * m * a * (1 - torch.exp(log_p)) / torch.exp(old_log_p)
    per_token = alpha * l_ppo + beta * l_rppo
    if kl_coef:
        d = ref_log_p - log_p
        per_token = per_token + kl_coef * (torch.exp(d) - d - 1) * r  # k3, times the ratio (use_bias_correction_kl)
    mask = mask.float()
    if loss_type == "grpo":  # mean over sequences of each sequence's token mean
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean(), m
    if loss_type == "bnpo":  # token mean over the micro-batch
        return (per_token * mask).sum() / mask.sum(), m
    if loss_type == "dr_grpo":  # token sum / (sequences * max_completion_length)
        return (per_token * mask).sum() / (mask.shape[0] * MAX_LEN), m
    # dapo: token sum / tokens of the generation batch per micro-batch (one process, no accumulation)
    return (per_token * mask).sum() / (tokens_in_generation / steps_per_generation), m


@pytest.mark.parametrize("loss_type, reverse_mask, kl_coef", [
    ("dapo", "ppo", 0.0), ("grpo", "none", 0.0), ("bnpo", "ppo", 0.1), ("dr_grpo", "ppo", 0.0)])
def test_one_step_equals_spec_transcription(model_dir, tmp_path, loss_type, reverse_mask, kl_coef):
    alpha, beta, z = 0.5, 1.0, -1.0  # alpha + beta * |z| = 1.5: the reverse term changes the loss
    args = SymmetricGRPOConfig(**_settings(tmp_path, loss_type=loss_type, beta=kl_coef), symmetric_alpha=alpha,
                               symmetric_beta=beta, symmetric_z=z, symmetric_reverse_mask=reverse_mask)
    trainer = RecordingTrainer(model=str(model_dir), reward_funcs=good_reward, args=args, train_dataset=_dataset())
    trainer.train()
    assert len(trainer.records) == 2 and all("grads" in rec for rec in trainer.records)
    masks = [rec["inputs"]["completion_mask"] for rec in trainer.records]
    tokens = float(sum(mask.sum() for mask in masks))
    assert float(trainer.records[1]["inputs"]["num_items_in_batch"]) == tokens  # TRL's count is the whole generation

    reference = GPT2LMHeadModel.from_pretrained(model_dir).eval()  # the initial weights: TRL's reference model
    for step, rec in enumerate(trainer.records):
        model = copy.deepcopy(reference)
        model.load_state_dict(rec["state"])
        inputs = rec["inputs"]
        log_p = _token_log_probs(model, inputs)
        old = inputs["old_per_token_logps"]
        with torch.no_grad():
            ref = _token_log_probs(reference, inputs) if kl_coef else None
            generating = copy.deepcopy(reference)  # pi_old: the weights the completions were sampled with
            generating.load_state_dict(trainer.records[0]["state"])
            valid = inputs["completion_mask"].bool()
            torch.testing.assert_close(old[valid], _token_log_probs(generating, inputs)[valid], rtol=1e-5, atol=1e-5)
        loss, m = spec_loss(log_p, old, inputs["advantages"], inputs["completion_mask"], alpha=alpha, beta=beta, z=z,
                            eps=0.2, authors_mask=reverse_mask == "ppo", loss_type=loss_type,
                            tokens_in_generation=tokens, steps_per_generation=2, kl_coef=kl_coef, ref_log_p=ref)
        loss.backward()
        torch.testing.assert_close(rec["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        for name, param in model.named_parameters():
            torch.testing.assert_close(rec["grads"][name], param.grad, rtol=1e-4, atol=1e-6, msg=name)
        assert any(g.abs().sum() > 0 for g in rec["grads"].values())
        if step == 1:  # the off-policy micro-batch: the ratio has moved and the mask is not all ones
            r = torch.exp(log_p.detach() - old)[valid]
            assert ((r < 0.8) | (r > 1.2)).any()
            if reverse_mask == "ppo":
                assert (m[valid] == 0).any() and (m[valid] == 1).any()


# ---------------------------------------------------------------------------------------------------------------
# alpha + beta * |z| = 1 with the authors' mask trains as plain TRL
# ---------------------------------------------------------------------------------------------------------------

def _train(cls, config_cls, model_dir: Path, out: Path, extra: dict, settings: dict) -> dict[str, torch.Tensor]:
    trainer = cls(model=str(model_dir), reward_funcs=good_reward, args=config_cls(**_settings(out, **settings), **extra),
                  train_dataset=_dataset())
    trainer.train()
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("settings", [
    dict(loss_type="dapo", max_steps=3),
    dict(loss_type="grpo", max_steps=2, gradient_accumulation_steps=2, generation_batch_size=16, beta=0.05,
         entropy_coef=0.01, max_grad_norm=1.0),
], ids=["dapo", "grpo-accumulation-kl-entropy"])
def test_rescaled_symmetric_trains_as_plain_grpo(model_dir, tmp_path, settings):
    """Same seed, same generations, gradients equal to float rounding, so the same parameters after a few steps.
    AdamW's epsilon is 1e-4 instead of 1e-8 here: a parameter whose exact gradient is 0 (the attention's key bias,
    to which softmax is invariant) gets a rounding-noise gradient of ~1e-9 in both runs, which AdamW with
    epsilon 1e-8 turns into updates of ~0.1 * lr that differ between any two summation orders."""
    settings = dict(settings, adam_epsilon=1e-4)
    plain = _train(GRPOTrainer, GRPOConfig, model_dir, tmp_path / "plain", {}, settings)
    rescaled = _train(SymmetricGRPOTrainer, SymmetricGRPOConfig, model_dir, tmp_path / "sym",
                      dict(symmetric_alpha=0.5, symmetric_beta=0.5, symmetric_z=-1.0), settings)
    initial = dict(GPT2LMHeadModel.from_pretrained(model_dir).named_parameters())
    assert any(not torch.equal(plain[n], initial[n]) for n in plain)  # it trained
    for name in plain:
        torch.testing.assert_close(rescaled[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)
    if settings["loss_type"] != "dapo":
        return
    # the unmasked reverse term is not a rescaling: the same run ends elsewhere (so this test can fail)
    unmasked = _train(SymmetricGRPOTrainer, SymmetricGRPOConfig, model_dir, tmp_path / "unmasked",
                      dict(symmetric_alpha=0.5, symmetric_beta=0.5, symmetric_z=-1.0, symmetric_reverse_mask="none"),
                      settings)
    assert max(float((unmasked[n] - plain[n]).abs().max()) for n in plain) > 1e-3


def _hook_inputs(trainer, seed: int = 0) -> dict:
    """A micro-batch as TRL's generation step hands it to ``_compute_loss``, with off-policy old log-probs."""
    g = torch.Generator().manual_seed(seed)
    batch, prompt_len, length = 4, 3, MAX_LEN
    completion_mask = torch.ones(batch, length, dtype=torch.long)
    completion_mask[0, 4:] = 0
    completion_mask[2, 2:] = 0
    with torch.no_grad():
        inputs = {"prompt_ids": torch.randint(2, len(WORDS), (batch, prompt_len), generator=g),
                  "prompt_mask": torch.ones(batch, prompt_len, dtype=torch.long),
                  "completion_ids": torch.randint(2, len(WORDS), (batch, length), generator=g),
                  "completion_mask": completion_mask,
                  "advantages": torch.tensor([1.2, -0.7, 0.4, -1.1])}
        logps = _token_log_probs(trainer.model, inputs)
    inputs["old_per_token_logps"] = logps + 0.4 * torch.randn(logps.shape, generator=g)  # ratios well past 1 +- eps
    inputs["ref_per_token_logps"] = logps + 0.1 * torch.randn(logps.shape, generator=g)
    inputs["sampling_per_token_logps"] = inputs["old_per_token_logps"] + 0.05 * torch.randn(logps.shape, generator=g)
    inputs["importance_sampling_ratio"] = 0.5 + torch.rand(logps.shape, generator=g)
    inputs["tool_mask"] = (torch.rand(logps.shape, generator=g) > 0.2).long()
    inputs["num_items_in_batch"] = completion_mask.sum() * 2
    return inputs


def _grads(trainer, compute_loss, inputs) -> dict[str, torch.Tensor]:
    trainer.model.zero_grad()
    compute_loss(trainer.model, inputs).backward()
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
def test_hook_options_match_trl_when_rescaled(model_dir, tmp_path, loss_type):
    """Entropy mask, off-policy mask, vLLM importance weights, tool mask, KL and entropy bonus: the hook's gradient is
    TRL's own ``_compute_loss``'s on the same trainer and micro-batch when alpha + beta * |z| = 1."""
    args = SymmetricGRPOConfig(**_settings(tmp_path, loss_type=loss_type, beta=0.05, gradient_accumulation_steps=2,
                                           top_entropy_quantile=0.5, off_policy_mask_threshold=0.01,
                                           entropy_coef=0.01),
                               symmetric_alpha=0.25, symmetric_beta=0.375, symmetric_z=-2.0)
    trainer = SymmetricGRPOTrainer(model=str(model_dir), reward_funcs=good_reward, args=args, train_dataset=_dataset())
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 2  # set by Trainer's loop at each step
    # vLLM cannot run here; its importance weights reach the loss only through these two attributes
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True
    inputs = _hook_inputs(trainer)
    ours = _grads(trainer, trainer._compute_loss, inputs)
    theirs = _grads(trainer, lambda model, batch: GRPOTrainer._compute_loss(trainer, model, batch), inputs)
    assert set(ours) == set(theirs)
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-7, msg=name)
    metrics = trainer._metrics["train"]
    assert 0 < metrics["symmetric/active_fraction"][-1] < 1  # some tokens are outside the clipped objective
    # and a weight that is not a rescaling of PPO gives another gradient
    trainer.args.symmetric_reverse_mask = "none"
    unmasked = _grads(trainer, trainer._compute_loss, inputs)
    assert max(float((unmasked[n] - theirs[n]).abs().max()) for n in theirs) > 1e-4


# ---------------------------------------------------------------------------------------------------------------
# it learns (the example)
# ---------------------------------------------------------------------------------------------------------------

def test_example_short_run_raises_reward(capsys):
    """examples/trl_symmetric_grpo.py (docs/integrations/trl.md): 10 steps of symmetric GRPO (alpha 0.5, beta 0.4,
    z -1, the authors' mask) on its tiny GPT-2 multiply the sampled reward several times over (seed 0: 0.39 -> 6.0
    "good" words of at most 6; seeds 0-3 after 8 steps: 1.4 to 6)."""
    path = Path(__file__).parents[1] / "examples" / "trl_symmetric_grpo.py"
    spec = importlib.util.spec_from_file_location("trl_symmetric_grpo", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--steps", "10"])
    assert result["after"] > result["before"] + 1.0, result
    assert "mean reward" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, fix", [
    (dict(loss_type="sapo"), "loss_type='dapo'"),
    (dict(loss_type="cispo"), "loss_type='dapo'"),
    (dict(loss_type="vespo"), "loss_type='dapo'"),
    (dict(loss_type="luspo", importance_sampling_level="sequence"), "loss_type='dapo'"),
    (dict(importance_sampling_level="sequence", loss_type="grpo"), "importance_sampling_level='token'"),
    (dict(epsilon_high=0.28), "epsilon_high=None"),
    (dict(delta=2.0), "delta=None"),
    (dict(symmetric_z=1.0), "must be negative"),
    (dict(symmetric_reverse_mask="unmasked"), "'ppo'"),
    (dict(symmetric_beta=-0.4), ">= 0"),
])
def test_unsupported_settings_name_the_fix(tmp_path, fields, fix):
    settings = _settings(tmp_path)
    settings.update({k: v for k, v in fields.items() if not k.startswith("symmetric_")})
    with pytest.raises(ValueError, match=fix.replace("(", r"\(")):
        SymmetricGRPOConfig(**settings, **{k: v for k, v in fields.items() if k.startswith("symmetric_")})


def test_trainer_refuses_plain_config_and_later_changes(model_dir, tmp_path):
    with pytest.raises(TypeError, match="SymmetricGRPOConfig"):
        SymmetricGRPOTrainer(model=str(model_dir), reward_funcs=good_reward, args=GRPOConfig(**_settings(tmp_path)),
                             train_dataset=_dataset())
    args = SymmetricGRPOConfig(**_settings(tmp_path))
    args.epsilon_high = 0.28  # changed after the config validated itself
    with pytest.raises(ValueError, match="epsilon_high=None"):
        SymmetricGRPOTrainer(model=str(model_dir), reward_funcs=good_reward, args=args, train_dataset=_dataset())


def test_liger_loss_of_trl_1_13_is_refused(tmp_path, monkeypatch):
    """TRL 1.13's compute_loss hands the loss to its compute_liger_loss when use_liger_kernel=True, bypassing
    _compute_loss; the installed 1.16 has no such method, so its class shape is reproduced here."""
    assert SymmetricGRPOConfig(**_settings(tmp_path), use_liger_kernel=True).use_liger_kernel  # 1.14+: allowed
    monkeypatch.setattr(GRPOTrainer, "compute_liger_loss", lambda *args: None, raising=False)
    with pytest.raises(ValueError, match="use_liger_kernel=False or install trl>=1.14"):
        SymmetricGRPOConfig(**_settings(tmp_path), use_liger_kernel=True)


def test_trl_version_range(model_dir, tmp_path, monkeypatch):
    assert SUPPORTED_TRL_VERSIONS == ">=1.13,<1.17"
    assert check_trl_version() == trl.__version__ == "1.16.0"  # the version the test extra pins
    for good in ("1.13.0", "1.14.2", "1.16.0"):
        assert check_trl_version(good) == good
    for bad in ("1.12.0", "1.17.0", "1.17.0.dev0", "2.0.0"):
        with pytest.raises(ImportError, match=r"trl>=1.13,<1.17.*pip install"):
            check_trl_version(bad)
    monkeypatch.setattr(trl, "__version__", "1.12.0")  # as if TRL were downgraded after the import
    with pytest.raises(ImportError, match="found trl 1.12.0"):
        SymmetricGRPOTrainer(model=str(model_dir), reward_funcs=good_reward, args=SymmetricGRPOConfig(**_settings(tmp_path)),
                             train_dataset=_dataset())
