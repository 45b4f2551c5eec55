"""The verifiable-reward task (symrl.rlhf.verifiable) and verifier noise (symrl.rlhf.rewards): the exact check on
hand-written responses, the held-out split, false-positive and false-negative rates, bad specs, and one training
iteration of a tiny model on arithmetic prompts with noisy verification (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from symrl.errors import SymrlError
from symrl.noise import NoiseSpec
from symrl.rlhf.rewards import NoisyReward, VerifierNoiseSpec, parse_reward_noise
from symrl.rlhf.verifiable import (
    SPLIT_SEED,
    ExactAnswer,
    VerifiableTask,
    addends,
    arithmetic_prompt,
    arithmetic_task,
    first_integer,
)

# -- the exact check -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("response", "expected"), [
    (" 12", 1.0),            # the sampler's usual form: a leading space
    ("12", 1.0),
    ("\n 12", 1.0),          # any white space first
    (" 12\n3 + 4 = 7", 1.0),  # trailing text after the answer
    (" 12 apples", 1.0),
    (" 12.5", 1.0),          # the first integer counts, as its regex says
    (" 13", 0.0),            # wrong
    (" 1", 0.0),             # a prefix of the answer is not the answer
    (" 120", 0.0),
    ("", 0.0),               # no number
    (" twelve", 0.0),
    ("answer: 12", 0.0),     # the number must come first
    (" -12", 0.0),
    (" +12", 0.0),
])
def test_exact_answer_on_hand_written_responses(response, expected):
    assert ExactAnswer()([arithmetic_prompt(7, 5)], [response]) == [expected]


def test_exact_answer_reads_the_operands_from_any_prompt_of_the_form_and_negative_answers():
    check = ExactAnswer()
    assert check(["2 + 2 = 4\n-3 + 1 ="], [" -2"]) == [1.0]  # a negative sum
    assert check(["-5 + -7 ="], ["-12\n"]) == [1.0]  # one line, no few-shot examples
    assert check(["x\n 40 +  2 =  "], ["42"]) == [1.0]  # spacing around the operands
    assert check([arithmetic_prompt(29, 29), arithmetic_prompt(0, 0)], [" 58", " 0"]) == [1.0, 1.0]
    assert addends(arithmetic_prompt(13, 8)) == (13, 8) and first_integer("  -7x") == -7 and first_integer("x7") is None


@pytest.mark.parametrize("prompt", ["3 + 4 = 7\nhello", "3 + 4 = 7", "3 * 4 =", "", "3 + 4 =\n"])
def test_a_prompt_the_check_cannot_parse_is_a_clear_error(prompt):
    with pytest.raises(SymrlError, match="A \\+ B =") as caught:
        ExactAnswer()([prompt], [" 7"])
    assert "\n" not in str(caught.value)


def test_the_check_needs_one_response_per_prompt():
    with pytest.raises(SymrlError, match="one response per prompt"):
        ExactAnswer()([arithmetic_prompt(1, 2)], [" 3", " 3"])


# -- prompts and the held-out split ----------------------------------------------------------------------------


def test_arithmetic_prompts_cover_every_pair_once_with_their_answers():
    task = arithmetic_task()
    assert len(task.prompts) == 900 == len(set(task.prompts))
    assert task.prompts[0] == "3 + 4 = 7\n12 + 5 = 17\n0 + 0 =" and task.prompts[-1].endswith("\n29 + 29 =")
    assert task.check(task.prompts, [" " + a for a in task.answers]) == [1.0] * 900
    assert {sum(addends(p)) for p in task.prompts} == set(range(59))
    assert len(arithmetic_task(0, 20).prompts) == 400


def test_the_split_is_deterministic_disjoint_and_independent_of_anything_but_its_seed():
    task = arithmetic_task()
    train, held = task.split(128)
    assert len(held) == 128 and len(train) == 772
    assert not set(train) & set(held) and set(train) | set(held) == set(task.prompts)
    assert (train, held) == arithmetic_task().split(128) == task.split(128, seed=SPLIT_SEED)
    assert task.split(128, seed=SPLIT_SEED + 1)[1] != held
    assert task.split(64)[1] == held[:64]  # fewer evaluation prompts: a subset of the same order
    assert held != task.prompts[-128:]  # shuffled, not the last pairs


@pytest.mark.parametrize("count", [0, 900, 1000])
def test_a_split_without_training_or_evaluation_prompts_is_refused(count):
    with pytest.raises(SymrlError, match="eval_prompts"):
        arithmetic_task().split(count)


def test_a_verifiable_task_needs_one_answer_per_prompt():
    with pytest.raises(SymrlError, match="answers"):
        VerifiableTask("t", ["a", "b"], ["1"], ExactAnswer())


# -- verifier noise ------------------------------------------------------------------------------------------


def _clean(n: int = 20_000) -> np.ndarray:
    return np.tile([0.0, 1.0], n // 2)


def test_verifier_noise_flips_at_its_stated_rates_and_is_seeded():
    noise = NoisyReward.from_spec(lambda p, r: [], "verifier:0.1/0.2", seed=3)
    assert (noise.false_positive, noise.false_negative) == (0.1, 0.2)
    clean = _clean()
    noisy = noise.perturb(clean)
    assert set(np.unique(noisy)) <= {0.0, 1.0}
    false_positive = noisy[clean == 0].mean()  # a wrong response scored right
    false_negative = 1 - noisy[clean == 1].mean()  # a right one scored wrong
    # 10,000 draws each: standard errors 0.003 and 0.004; 5 of them as tolerance
    assert abs(false_positive - 0.1) < 0.015 and abs(false_negative - 0.2) < 0.02
    again = NoisyReward.from_spec(lambda p, r: [], "verifier:0.1/0.2", seed=3).perturb(clean)
    other = NoisyReward.from_spec(lambda p, r: [], "verifier:0.1/0.2", seed=4).perturb(clean)
    np.testing.assert_array_equal(noisy, again)
    assert (noisy != other).any()


def test_one_probability_is_both_rates_and_zero_is_clean():
    symmetric = NoisyReward.from_spec(lambda p, r: [], "verifier:0.3", seed=0)
    assert (symmetric.false_positive, symmetric.false_negative) == (0.3, 0.3)
    clean = _clean(2_000)
    np.testing.assert_array_equal(NoisyReward.from_spec(lambda p, r: [], "verifier:0", seed=0).perturb(clean), clean)
    np.testing.assert_array_equal(NoisyReward.from_spec(lambda p, r: [], "verifier:1/1", seed=0).perturb(clean), 1 - clean)


def test_verifier_noise_continues_from_a_restored_generator_state():
    noise = NoisyReward.from_spec(lambda p, r: [], "verifier:0.25/0.25", seed=7)
    noise.perturb(_clean(100))
    state = noise.rng.bit_generator.state  # what RLHFTrainer saves as noise_rng
    expected = noise.perturb(_clean(100))
    restored = NoisyReward.from_spec(lambda p, r: [], "verifier:0.25/0.25", seed=0)
    restored.rng.bit_generator.state = state
    np.testing.assert_array_equal(restored.perturb(_clean(100)), expected)


def test_verifier_noise_wraps_a_reward_function():
    noise = NoisyReward.from_spec(ExactAnswer(), "verifier:0/1", seed=0)
    assert noise([arithmetic_prompt(1, 1), arithmetic_prompt(1, 2)], [" 2", " 4"]) == [0.0, 0.0]


@pytest.mark.parametrize("scores", [[0.0, 0.5], [1.0, 2.0], [-1.0], [0.999]])
def test_verifier_noise_refuses_scores_other_than_0_and_1(scores):
    noise = NoisyReward.from_spec(lambda p, r: [], "verifier:0.1", seed=0)
    with pytest.raises(SymrlError, match="0 or 1"):
        noise.perturb(scores)


def test_specs_parse_and_flip_and_gaussian_are_unchanged():
    assert parse_reward_noise("verifier:0.1/0.2") == VerifierNoiseSpec(0.1, 0.2)
    assert parse_reward_noise(" Verifier:0.1") == VerifierNoiseSpec(0.1, 0.1)
    assert str(parse_reward_noise("verifier:0.1/0.2")) == "verifier:0.1/0.2"
    assert str(parse_reward_noise("verifier:0.1")) == "verifier:0.1"
    assert parse_reward_noise("flip:0.1") == NoiseSpec("flip", 0.1)
    assert parse_reward_noise("gaussian:0.5") == NoiseSpec("gaussian", 0.5)
    assert parse_reward_noise(None) is None and parse_reward_noise("none") is None
    flip = NoisyReward.from_spec(lambda p, r: [], "flip:1", seed=0)
    np.testing.assert_allclose(flip.perturb([0.0, 1.0, 2.0]), [2.0, 1.0, 0.0])  # 2c - s around the batch mean


@pytest.mark.parametrize(("spec", "message"), [
    ("verifier:1.5", "not a probability"),
    ("verifier:-0.1", "not a probability"),
    ("verifier:0.1/2", "not a probability"),
    ("verifier:nan", "not a probability"),
    ("verifier:a", "not a number"),
    ("verifier:", "not a number"),
    ("verifier:0.1/", "not a number"),
    ("verifier:0.1/0.2/0.3", "verifier:FP/FN"),
    ("verifer:0.1", "verifier:FP/FN"),  # a typo in the kind: the message lists every kind
    ("verifier", "verifier:FP/FN"),
    ("uniform:0.1", "flip:P"),  # the Gymnasium trainer's kind, not an RLHF one
    ("flip:2", "probability"),
])
def test_bad_specs_are_one_line_errors_naming_the_fix(spec, message):
    from symrl.rlhf.config import RLHFConfig

    with pytest.raises(SymrlError, match=message) as caught:
        parse_reward_noise(spec)
    assert "\n" not in str(caught.value) and "reward_noise" in str(caught.value)
    with pytest.raises(SymrlError):
        RLHFConfig(reward_noise=spec).validate()


def test_noisy_reward_refuses_probabilities_outside_0_1_and_mixed_kinds():
    with pytest.raises(SymrlError, match="\\[0, 1\\]"):
        NoisyReward(lambda p, r: [], false_positive=1.2)
    with pytest.raises(SymrlError, match="one kind"):
        NoisyReward(lambda p, r: [], flip=0.1, false_negative=0.1)


# -- the task and a training iteration on a tiny model ------------------------------------------------------------

VOCAB = ["<pad>", "<eos>", *"0123456789", "+", "=", " "]


def _digit_tokenizer():
    """Word-level over digits, '+', '=' and a space; decoding joins tokens without spaces (' 12' is an answer)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                       pre_tokenizers.Digits(individual_digits=True)])
    tokenizer.decoder = decoders.Fuse()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


def _digit_gpt2(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(VOCAB), n_positions=64,
                                     bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def _tiny_config(algo: str = "ppo", **overrides):
    from symrl.rlhf.config import RLHFConfig

    values = dict(task="arithmetic", algo=algo, iterations=1, batch_size=8, minibatch_size=4, epochs=1,
                  learning_rate=1e-3, max_new_tokens=3, top_k=0, max_prompt_tokens=32, eval_prompts=8, eval_every=1,
                  checkpoint_every=1, reward_noise="verifier:0.1/0.2", device="cpu", seed=0)
    return RLHFConfig(**{**values, **overrides})


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_one_iteration_on_arithmetic_prompts_with_verifier_noise_and_resume(algo, tmp_path):
    from symrl.rlhf import trainer as trainer_module
    from symrl.rlhf.trainer import RLHFTrainer

    if algo not in getattr(trainer_module, "ALGOS", ("ppo", "sppo")):
        pytest.skip(f"{algo} is not available in this trainer")
    extra = {"group_size": 4} if algo != "ppo" else {}
    train, held = arithmetic_task().split(8)
    cfg = _tiny_config(algo, **extra)
    trainer = RLHFTrainer(cfg, _digit_gpt2(), _digit_tokenizer(), ExactAnswer(), train, eval_prompts=held,
                          out=tmp_path / "run")
    assert (trainer.noise.false_positive, trainer.noise.false_negative) == (0.1, 0.2)
    history = trainer.run()
    row = history[-1]
    assert row["iteration"] == 1 and 0.0 <= row["score"] <= 1.0 and 0.0 <= row["train_score"] <= 1.0
    assert all(np.isfinite(row[key]) for key in ("loss", "policy_loss", "kl"))
    evaluations = trainer.history_eval
    assert len(evaluations) == 2 and all(e["episodes"] == 8 and 0.0 <= e["mean_return"] <= 1.0 for e in evaluations)
    saved = trainer.noise.rng.bit_generator.state
    resumed = RLHFTrainer(cfg.replace(iterations=2), _digit_gpt2(), _digit_tokenizer(), ExactAnswer(), train,
                          eval_prompts=held, out=tmp_path / "run", resume=True)
    assert resumed.noise.rng.bit_generator.state == saved  # the verifier noise continues where it stopped
    resumed.run()
    assert resumed.iteration == 2


def test_load_task_builds_the_arithmetic_task_from_a_given_policy_folder(tmp_path):
    from symrl.rlhf.tasks import PRESETS, load_task, make_rlhf_config

    folder = tmp_path / "policy"
    _digit_gpt2().save_pretrained(folder)
    _digit_tokenizer().save_pretrained(folder)
    common = PRESETS["arithmetic"]["common"]
    assert common["top_k"] == 0 and common["temperature"] == 1.0 and common["eval_prompts"] == 128
    setup = load_task(make_rlhf_config("arithmetic", policy_model=str(folder), lora_r=0, device="cpu"), log=lambda _: None)
    train, held = arithmetic_task().split(128)
    assert setup.prompts == train and setup.eval_prompts == held and not setup.eval_references
    assert isinstance(setup.reward_fn, ExactAnswer)
    with pytest.raises(SymrlError, match="reward_model"):
        load_task(make_rlhf_config("arithmetic", policy_model=str(folder), reward_model=str(folder), device="cpu"),
                  log=lambda _: None)


def test_the_task_uses_the_prepared_policy_alone(tmp_path, monkeypatch):
    """prepare_policy: the manifest's policy when the sentiment assets are ready; else a converted policy folder
    alone, without the reward model (no download when it is there)."""
    from symrl.rlhf import assets

    monkeypatch.setattr(assets, "download", lambda *a, **k: pytest.fail("nothing should be downloaded"))
    directory = assets.sentiment_dir(tmp_path)
    (directory / "policy").mkdir(parents=True)
    (directory / "policy" / "config.json").write_text("{}")
    assert assets.prepare_policy(tmp_path, log=lambda _: None) == directory / "policy"
    assert not (directory / "reward").exists()
    (directory / "manifest.json").write_text('{"policy": "elsewhere"}')
    assert assets.prepare_policy(tmp_path, log=lambda _: None) == directory / "elsewhere"


@pytest.mark.slow
def test_untrained_smollm2_passes_10_to_60_percent_of_the_held_out_prompts():
    """The real SmolLM2-135M (skipped unless `symrl rlhf --prepare-only` has run): the pass rate the docs state."""
    from symrl.rlhf import assets
    from symrl.rlhf.tasks import load_task, make_rlhf_config
    from symrl.rlhf.trainer import RLHFTrainer

    if not (assets.sentiment_dir() / "policy" / "config.json").exists():
        pytest.skip("the SmolLM2 policy is not prepared (symrl rlhf --prepare-only)")
    cfg = make_rlhf_config("arithmetic", device="cpu")
    setup = load_task(cfg, log=lambda _: None)
    trainer = RLHFTrainer(cfg, setup.policy, setup.tokenizer, setup.reward_fn, setup.prompts,
                          eval_prompts=setup.eval_prompts)
    row, _ = trainer.evaluate()
    assert row["episodes"] == 128 and 0.1 <= row["mean_return"] <= 0.6
