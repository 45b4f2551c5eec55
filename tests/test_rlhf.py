"""symrl.rlhf on a real tiny transformer: token GAE and loss with padding, log-probability consistency, KL,
the symmetric gradient's closed form, learning a programmatic reward, and resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_lm import WORDS, tiny_gpt2, tiny_tokenizer  # noqa: E402

from symrl import runs  # noqa: E402
from symrl.errors import SymrlError, TrainingDiverged  # noqa: E402
from symrl.losses import symmetric_ppo_loss  # noqa: E402
from symrl.rlhf import RLHFConfig, RLHFTrainer, Sampling, generate, score  # noqa: E402
from symrl.rlhf.advantages import token_gae  # noqa: E402

PROMPTS = ["the movie was", "it is", "the plot", "i", "a film and the movie was very"]
_tokenizer, _model = tiny_tokenizer, tiny_gpt2


def _prompts(tokenizer, texts=PROMPTS):
    tokenizer.padding_side = "left"
    encoded = tokenizer(list(texts), return_tensors="pt", padding=True)
    return encoded["input_ids"], encoded["attention_mask"]


# -- advantages and loss on padded token matrices ------------------------------------------------------------


def test_token_gae_with_padding_on_both_sides_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.float32)
    rewards = torch.tensor([[9.0, 0.1, -0.2, 1.0, 9.0], [0.5, 2.0, 9.0, 9.0, 9.0]])
    values = torch.tensor([[9.0, 0.3, 0.4, 0.5, 9.0], [1.0, 1.5, 9.0, 9.0, 9.0]])
    advantages, returns = token_gae(rewards, values, mask, gamma, lam)
    # row 0, valid t = 1, 2, 3 (terminal at 3)
    d3 = 1.0 - 0.5
    d2 = -0.2 + gamma * 0.5 - 0.4
    d1 = 0.1 + gamma * 0.4 - 0.3
    a3, a2 = d3, d2 + gamma * lam * d3
    a1 = d1 + gamma * lam * a2
    # row 1, valid t = 0, 1 (terminal at 1)
    b1 = 2.0 - 1.5
    b0 = 0.5 + gamma * 1.5 - 1.0 + gamma * lam * b1
    expected = torch.tensor([[0.0, a1, a2, a3, 0.0], [b0, b1, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)


def test_token_level_symmetric_loss_uses_valid_tokens_only():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float32)
    log_p = torch.tensor([[-1e4, -0.5, -1.2, float("-inf")], [-0.1, -2.0, -0.7, -0.3]], requires_grad=True)
    old = torch.tensor([[-1e4, -0.6, -0.9, -3.0], [-0.2, -1.5, -0.7, -0.9]])
    adv = torch.tensor([[5.0, 1.0, -0.5, 7.0], [0.3, -1.0, 2.0, -0.4]])
    out = symmetric_ppo_loss(log_p, old, adv, clip_range=0.2, alpha=0.5, beta=0.4, z=-1.0, mask=mask)
    valid = mask.bool()
    lp, lo, a = log_p[valid], old[valid], adv[valid]
    r = (lp - lo).exp()
    clipped = r.clamp(0.8, 1.2)
    l_ppo = -torch.min(r * a, clipped * a).mean()
    m = ((r >= 0.8) & (r <= 1.2)) | (r * a <= clipped * a)
    l_rev = torch.mean(m * a * (1 - lp.exp()) / lo.exp())  # -Z = 1
    torch.testing.assert_close(out.loss, 0.5 * l_ppo + 0.4 * l_rev)
    out.loss.backward()
    assert torch.isfinite(log_p.grad).all() and (log_p.grad[~valid] == 0).all()


# -- generation and scoring ---------------------------------------------------------------------------------


def test_draw_samples_each_rows_distribution_and_never_a_zero_probability_token():
    from symrl.rlhf.generation import draw  # noqa: PLC0415

    probs = torch.tensor([[0.0, 0.5, 0.2, 0.0, 0.3, 0.0], [0.1, 0.0, 0.0, 0.0, 0.0, 0.9], [0.0] * 5 + [1.0]])
    n = 40000
    tokens = draw(probs.repeat(n, 1), torch.Generator().manual_seed(0)).view(n, 3)
    for row in range(3):
        counts = torch.bincount(tokens[:, row], minlength=6).double()
        assert (counts[probs[row] == 0] == 0).all()
        sigma = (n * probs[row] * (1 - probs[row])).double().sqrt()
        assert ((counts - n * probs[row]).abs() <= 4 * sigma + 1e-9).all(), (row, counts)
    again = draw(probs.repeat(n, 1), torch.Generator().manual_seed(0)).view(n, 3)
    assert torch.equal(tokens, again)  # seeded


def test_recomputed_logprobs_equal_generation_within_1e5():
    tokenizer, model = _tokenizer(), _model()
    ids, mask = _prompts(tokenizer)
    sampling = Sampling(max_new_tokens=12, min_new_tokens=3, temperature=0.8, top_k=5, eos_token_id=1, pad_token_id=0)
    generated = generate(model, ids, mask, sampling, torch.Generator().manual_seed(0))
    assert generated.response_mask[:, :3].all()  # EOS forbidden before min_new_tokens
    assert (generated.logprobs[generated.response_mask == 0] == 0).all()
    recomputed, entropy = score(model, generated, sampling)
    torch.testing.assert_close(recomputed, generated.logprobs, atol=1e-5, rtol=0)
    assert (entropy[generated.response_mask.bool()] > 0).all()


def test_shared_prompts_computed_once_give_the_same_samples_logprobs_and_gradients(monkeypatch):
    """Rows that share a prompt (a group's responses; here in no particular order, with left padding of different
    lengths) compute it once: generation samples the same tokens with the same log-probabilities, and scoring gives
    the log-probabilities and parameter gradients of one forward over every whole row, up to float rounding."""
    import symrl.rlhf.generation as generation  # noqa: PLC0415

    tokenizer, model = _tokenizer(), _model()
    texts = [PROMPTS[i] for i in (0, 3, 0, 4, 3, 0, 4, 1)]
    ids, mask = _prompts(tokenizer, texts)
    first, inverse = generation.distinct_prompts(model, ids, mask)
    assert len(first) == 4 and torch.equal(ids[first][inverse], ids)
    sampling = Sampling(max_new_tokens=10, min_new_tokens=2, temperature=0.9, eos_token_id=1, pad_token_id=0)

    def run(shared: bool):
        if not shared:
            monkeypatch.setattr(generation, "distinct_prompts", lambda *args: None)
        generated = generate(model, ids, mask, sampling, torch.Generator().manual_seed(3))
        model.zero_grad()
        logprobs, _ = score(model, generated, sampling)
        (logprobs * torch.linspace(0.5, 1.5, logprobs.numel()).reshape(logprobs.shape)).sum().backward()
        monkeypatch.undo()
        return generated, logprobs, [p.grad.clone() for p in model.parameters()]

    (gen_s, lp_s, grads_s), (gen_f, lp_f, grads_f) = run(True), run(False)
    assert torch.equal(gen_s.sequences, gen_f.sequences) and gen_s.response_mask.sum() > 10
    torch.testing.assert_close(gen_s.logprobs, gen_f.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp_s, lp_f, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp_s, gen_s.logprobs, atol=1e-5, rtol=0)
    for a, b in zip(grads_s, grads_f, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert generation.distinct_prompts(model.train(), ids, mask) is None  # dropout: every row its own forward
    model.eval()


def test_kl_estimate_is_zero_for_the_reference_itself_and_positive_in_expectation():
    tokenizer, reference = _tokenizer(), _model(0)
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ids, mask = _prompts(tokenizer, PROMPTS * 40)
    sampling = Sampling(max_new_tokens=6, min_new_tokens=2, eos_token_id=1, pad_token_id=0)
    # samples from the reference: E[log p_ref - log p_policy] = KL(ref || policy) >= 0
    generated = generate(reference, ids, mask, sampling, torch.Generator().manual_seed(1))
    ref_lp, _ = score(reference, generated, sampling)
    pol_lp, _ = score(policy, generated, sampling)
    assert (ref_lp - pol_lp).sum(1).mean() > 0
    # the same constraints on both sides: the reference scored against itself has KL exactly 0
    torch.testing.assert_close(score(copy.deepcopy(reference), generated, sampling)[0], ref_lp)
    # scoring without the min-length constraint (the pitfall of SPEC 5) would bias the estimate
    unconstrained = Sampling(max_new_tokens=6, min_new_tokens=0, eos_token_id=1, pad_token_id=0)
    assert (score(reference, generated, unconstrained)[0] - ref_lp).sum(1).mean() < -1e-3


def test_symmetric_gradient_through_a_transformer_is_scaled_ppo_gradient():
    """SPEC 1.1 at token level: with the authors' mask, grad L_rPPO = |z| grad L_PPO."""
    tokenizer, model = _tokenizer(), _model()
    ids, mask = _prompts(tokenizer)
    sampling = Sampling(max_new_tokens=6, eos_token_id=1, pad_token_id=0)
    generated = generate(model, ids, mask, sampling, torch.Generator().manual_seed(2))
    old = generated.logprobs + 0.3 * torch.randn(generated.logprobs.shape, generator=torch.Generator().manual_seed(3))
    adv = torch.randn(old.shape, generator=torch.Generator().manual_seed(4))
    z = -1.7

    def grads(which: str) -> list[torch.Tensor]:
        log_p, _ = score(model, generated, sampling)
        out = symmetric_ppo_loss(log_p, old, adv, clip_range=0.2, beta=1.0, z=z, mask=generated.response_mask)
        assert 0 < out.active_fraction < 1  # both masked and active tokens occur
        return torch.autograd.grad(getattr(out, which), [p for p in model.parameters()], allow_unused=True)

    for reverse, rl in zip(grads("reverse_loss"), grads("rl_loss"), strict=True):
        if rl is not None:
            torch.testing.assert_close(reverse, abs(z) * rl, rtol=1e-4, atol=1e-7)


# -- training --------------------------------------------------------------------------------------------------

CFG = dict(algo="sppo", alpha=0.5, beta=0.4, batch_size=32, minibatch_size=8, epochs=4, learning_rate=3e-4,
           max_new_tokens=8, top_k=0, kl_coef=0.01)


def _good_fraction(prompts, responses):
    return [response.split().count("good") / 8 for response in responses]


def test_short_run_raises_a_programmatic_reward():
    trainer = RLHFTrainer(RLHFConfig(iterations=12, **CFG), _model(), _tokenizer(), _good_fraction, PROMPTS)
    history = trainer.run()
    first, last = history[0]["score"], sum(r["score"] for r in history[-3:]) / 3
    assert last > first + 0.15, [round(r["score"], 3) for r in history]
    assert all(r["kl"] >= -1e-6 for r in history[:2])


def test_save_then_resume_continues_like_an_uninterrupted_run(tmp_path):
    evaluation = dict(eval_prompts=PROMPTS[:3], eval_references=["good", "bad movie", "was good"])
    cfg = RLHFConfig(iterations=4, checkpoint_every=2, eval_every=2, **CFG)
    straight = RLHFTrainer(RLHFConfig(iterations=4, **CFG), _model(), _tokenizer(), _good_fraction, PROMPTS).run()
    first = RLHFTrainer(RLHFConfig(iterations=2, checkpoint_every=2, eval_every=2, **CFG), _model(), _tokenizer(),
                        _good_fraction, PROMPTS, out=tmp_path, **evaluation)
    first.run()
    resumed = RLHFTrainer(cfg, _model(), _tokenizer(), _good_fraction, PROMPTS, out=tmp_path, resume=True, **evaluation)
    assert resumed.iteration == 2
    rest = resumed.run()
    for a, b in zip(straight[2:], rest[-2:], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]
    # evaluations before training and every 2 iterations, each with its samples
    samples = sorted(path.name for path in (tmp_path / "samples").iterdir())
    assert samples == ["iter_0000.jsonl", "iter_0002.jsonl", "iter_0004.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "samples" / "iter_0004.jsonl").read_text().splitlines()]
    assert [line["prompt"] for line in lines] == PROMPTS[:3] and lines[1]["reference"] == "bad movie"
    assert resumed.history_eval[-1]["mean_return"] == pytest.approx(sum(line["score"] for line in lines) / 3)
    # an ordinary run directory: the results loader and the report read it
    from symrl.report import summary_table
    from symrl.results import load_evaluations

    evaluations = load_evaluations([tmp_path])
    assert list(evaluations["step"]) == [0, 64, 128] and set(evaluations["algorithm"]) == {"SPPO"}
    assert summary_table([tmp_path])["n"].tolist() == [1]


def test_evaluation_is_clean_seeded_and_measures_kl_win_rate_and_perplexity():
    references = ["good good good", "bad", "the movie"]
    cfg = RLHFConfig(iterations=1, reward_noise="flip:1.0", **CFG)
    trainer = RLHFTrainer(cfg, _model(), _tokenizer(), _good_fraction, PROMPTS, eval_prompts=PROMPTS[:3],
                          eval_references=references)
    row, samples = trainer.evaluate()
    again, _ = trainer.evaluate()
    assert row == again  # a fixed evaluation seed: the same draws while the policy is unchanged
    assert row["kl"] == pytest.approx(0.0, abs=1e-5)  # the policy is still its reference
    assert row["mean_return"] == pytest.approx(sum(_good_fraction(None, [s["response"] for s in samples])) / 3)
    scores = [s["score"] for s in samples]
    expected_wins = [(a > b) + 0.5 * (a == b) for a, b in zip(scores, [3 / 8, 0.0, 0.0], strict=True)]
    assert row["win_rate"] == pytest.approx(sum(expected_wins) / 3)
    assert 1.0 < row["perplexity"] < 2 * len(WORDS)  # an untrained model: about uniform over the vocabulary
    # noise is for training only: every score is flipped around the batch mean in training, never in evaluation
    trainer.step()
    last = trainer.history[-1]
    assert last["train_score"] == pytest.approx(last["score"], abs=1e-6)  # flipping all around the mean keeps it
    with pytest.raises(SymrlError, match="reward_noise"):
        RLHFConfig(reward_noise="flip:2").validate()


def test_resume_on_another_kind_of_device_warns_and_samples_from_a_fresh_seed(tmp_path):
    RLHFTrainer(RLHFConfig(iterations=1, checkpoint_every=1, **CFG), _model(), _tokenizer(), _good_fraction, PROMPTS,
                out=tmp_path).run()
    state = runs.safe_torch_load(tmp_path / runs.CHECKPOINT)
    state["processes"][0]["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    runs.atomic_torch_save(state, tmp_path / runs.CHECKPOINT)
    with pytest.warns(UserWarning, match="another kind of device"):
        resumed = RLHFTrainer(RLHFConfig(iterations=2, **CFG), _model(), _tokenizer(), _good_fraction, PROMPTS,
                              out=tmp_path, resume=True)
    assert len(resumed.run()) == 1 and resumed.iteration == 2


def test_a_non_finite_loss_stops_the_run_and_records_why(tmp_path):
    from symrl.rlhf.models import value_model_for

    policy = _model()
    critic = value_model_for(policy)
    torch.nn.init.constant_(critic.head.bias, float("nan"))  # NaN values -> NaN advantages and value loss
    trainer = RLHFTrainer(RLHFConfig(iterations=2, **CFG), policy, _tokenizer(), _good_fraction, PROMPTS,
                          value_model=critic, out=tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite loss"):
        trainer.run()
    assert runs.read_status(tmp_path)["state"] == "failed"


@pytest.mark.parametrize("reward_fn, message", [
    (lambda prompts, responses: [0.5], "returned 1 scores for 32 responses"),
    (lambda prompts, responses: [float("nan")] * len(prompts), "non-finite score"),
    (lambda prompts, responses: ["good"] * len(prompts), "must return one number per response"),
])
def test_a_reward_function_that_does_not_return_one_finite_number_per_response_is_an_error(reward_fn, message):
    trainer = RLHFTrainer(RLHFConfig(iterations=1, **CFG), _model(), _tokenizer(), reward_fn, PROMPTS)
    with pytest.raises(SymrlError, match=message):
        trainer.run()


def test_every_process_stops_when_one_has_a_non_finite_loss():
    """With several processes the check is a mean over them: a finite loss here, a NaN in another process."""
    trainer = RLHFTrainer(RLHFConfig(iterations=1, **CFG), _model(), _tokenizer(), _good_fraction, PROMPTS)

    class OtherProcessDiverged:  # what accelerate's reduce returns when the other of two processes saw a NaN
        num_processes = 2

        def reduce(self, tensor, reduction):
            assert reduction == "mean"
            return (tensor + 0.0) / 2

    assert trainer._finite_everywhere(torch.tensor(1.5))
    trainer.accelerator = OtherProcessDiverged()
    assert not trainer._finite_everywhere(torch.tensor(1.5))


def test_lora_policy_trains_adapters_only_with_the_adapters_off_as_reference(tmp_path):
    from symrl.rlhf.hub import add_lora

    policy = add_lora(_model(), r=4, alpha=8, dropout=0.0)
    frozen = {name: p.detach().clone() for name, p in policy.named_parameters() if not p.requires_grad}
    cfg = RLHFConfig(iterations=2, checkpoint_every=2, **CFG)
    trainer = RLHFTrainer(cfg, policy, _tokenizer(), _good_fraction, PROMPTS, out=tmp_path)
    assert trainer.reference is None
    assert all("lora_" in name or name.startswith("head") or "value" in name
               for name, p in [*policy.named_parameters(), *trainer.value_model.named_parameters()] if p.requires_grad)
    history = trainer.run()
    assert abs(history[0]["kl"]) < 1e-5 < abs(history[1]["kl"])  # adapters start at zero, then move away
    for name, p in policy.named_parameters():
        if name in frozen:
            torch.testing.assert_close(p, frozen[name])
    # the checkpoint holds the adapters, not the frozen base; a resume loads them back
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["policy"] and all("lora_" in name for name in state["policy"])
    resumed = RLHFTrainer(RLHFConfig(iterations=3, **CFG), add_lora(_model(), r=4, alpha=8, dropout=0.0), _tokenizer(),
                          _good_fraction, PROMPTS, out=tmp_path, resume=True)
    for (name, a), b in zip(policy.named_parameters(), resumed.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_bad_input_is_a_clear_error():
    tokenizer = _tokenizer()
    with pytest.raises(SymrlError, match="max_prompt_tokens"):
        RLHFTrainer(RLHFConfig(max_prompt_tokens=2, **CFG), _model(), tokenizer, _good_fraction, PROMPTS)
    tokenizer.pad_token = None
    with pytest.raises(SymrlError, match="pad token"):
        RLHFTrainer(RLHFConfig(**CFG), _model(), tokenizer, _good_fraction, PROMPTS)
    with pytest.raises(SymrlError, match="multiple"):
        RLHFConfig(batch_size=10, minibatch_size=4).validate()


@pytest.mark.parametrize("overrides, message", [
    (dict(max_grad_norm=-1.0), "max_grad_norm must be positive"),
    (dict(kl_coef=-0.1), "kl_coef must be >= 0"),
    (dict(kl_target=0.0), "kl_target must be positive"),
    (dict(temperature=0.0), "temperature must be a positive finite number"),
    (dict(lam=1.2), "lam .* must lie in"),
    (dict(gamma=0.0), "gamma .* must lie in"),
    (dict(z=0.5), "z .* must be negative"),
    (dict(learning_rate=float("nan")), "learning_rate is nan"),
    (dict(nll_batch_size=0), "nll_batch_size must be positive"),
])
def test_bad_settings_name_the_field(overrides, message):
    with pytest.raises(SymrlError, match=message):
        RLHFConfig(**overrides).validate()


# -- rewards -------------------------------------------------------------------------------------------------


def test_classifier_reward_uses_its_own_tokenizer_and_returns_the_label_probability(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from symrl.rlhf.rewards import ClassifierReward

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the"]))
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=9, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=32, num_labels=2, id2label={0: "NEG", 1: "POS"},
                                                     label2id={"NEG": 0, "POS": 1}))
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    reward = ClassifierReward.from_pretrained(str(tmp_path / "rm"), label="POS", batch_size=2)
    scores = reward(["the movie ", "the ", "bad "], ["good", "bad movie", "good good"])
    with torch.no_grad():
        encoded = tokenizer(["the movie good"], return_tensors="pt")
        expected = reward.model(**encoded).logits.softmax(-1)[0, 1].item()
    assert scores[0] == pytest.approx(expected, abs=1e-6) and all(0 < s < 1 for s in scores)
    with pytest.raises(SymrlError, match="the reward model folder .*missing' does not exist"):
        ClassifierReward.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SymrlError, match="cannot load the reward model .*empty"):
        ClassifierReward.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(SymrlError, match="no label"):
        ClassifierReward(model, tokenizer, label="HAPPY")


def test_reward_noise_flips_centred_scores_and_is_seeded():
    from symrl.rlhf.rewards import NoisyReward

    clean = lambda prompts, responses: [0.9, 0.1, 0.7, 0.3] * 250  # noqa: E731
    noisy = NoisyReward(clean, flip=0.25, center=0.5, seed=0)
    raw = noisy([""] * 1000, [""] * 1000)
    scores = torch.tensor(raw, dtype=torch.float64)
    flipped = (scores - torch.tensor(clean(None, None), dtype=torch.float64)).abs() > 1e-9
    assert 0.2 < flipped.float().mean() < 0.3
    torch.testing.assert_close(scores[flipped], 1.0 - torch.tensor(clean(None, None), dtype=scores.dtype)[flipped])
    assert NoisyReward(clean, flip=0.25, center=0.5, seed=0)([""] * 1000, [""] * 1000) == raw
    with pytest.raises(SymrlError):
        NoisyReward(clean, flip=1.5)


def test_auxiliary_nll_on_reference_texts_lowers_their_loss():
    texts = ["the movie was very good and the plot was good"] * 4
    cfg = RLHFConfig(iterations=3, nll_coef=1.0, **{**CFG, "beta": 0.0, "algo": "ppo", "alpha": 1.0})
    trainer = RLHFTrainer(cfg, _model(), _tokenizer(), lambda p, r: [0.0] * len(r), PROMPTS, reference_texts=texts)
    history = trainer.run()
    assert history[-1]["nll"] < history[0]["nll"]
    with pytest.raises(SymrlError, match="reference_texts"):
        RLHFTrainer(cfg, _model(), _tokenizer(), _good_fraction, PROMPTS)


@pytest.mark.parametrize("key,value", [("max_new_tokens", 100_000_000), ("batch_size", 10**8), ("iterations", 10**9)])
def test_sizes_above_the_limits_are_refused_before_any_model_loads(key, value):
    with pytest.raises(SymrlError, match=f"{key} {value:,} is above symrl's limit"):
        RLHFConfig(**{key: value, "minibatch_size": 1}).validate()
