"""symrl.rlhf.decoder: the plain forward of GPT-2, Llama, Qwen2 and Qwen3 against Hugging Face's own, on tiny random
models: logits with left padding, with a cache, one token at a time and several; parameter gradients; sampling
the same tokens; and every case it must leave to ``model(...)``."""

from __future__ import annotations

import importlib.util

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tiny_lm import WORDS, tiny_gpt2, tiny_tokenizer  # noqa: E402

from symrl.rlhf import Sampling, decoder, generate, score  # noqa: E402
from symrl.rlhf.generation import position_ids  # noqa: E402


def tiny_llama(cls_name: str = "LlamaForCausalLM", **overrides):
    """GQA (4 query heads over 2 key/value heads), tied embeddings, biases (Llama's optional ones on every
    projection, Qwen2's on q/k/v), Qwen3's per-head query/key norms: the options the plain forward reads."""
    torch.manual_seed(0)
    config_cls = {"Qwen2ForCausalLM": transformers.Qwen2Config, "Qwen3ForCausalLM": transformers.Qwen3Config}.get(
        cls_name, transformers.LlamaConfig)
    if cls_name == "LlamaForCausalLM":
        overrides = {"attention_bias": True, "mlp_bias": True, **overrides}
    config = config_cls(vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0, **overrides)
    return _randomised(getattr(transformers, cls_name)(config).eval())


def _randomised(model):
    """Norm weights and biases away from their initial 1 and 0, so that a mistake in either shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.3 * torch.randn_like(p))
    return model


MODELS = {"gpt2": lambda: _randomised(tiny_gpt2()), "llama": tiny_llama, "qwen2": lambda: tiny_llama("Qwen2ForCausalLM"),
          "qwen3": lambda: tiny_llama("Qwen3ForCausalLM", head_dim=16)}  # head_dim: Qwen3's is not hidden / heads
PROMPTS = ["the movie was", "it", "the plot", "a film and the movie was very"]


def _batch():
    """Left-padded prompts of different lengths, each followed by 5 response tokens (the last row ends early)."""
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    responses = torch.randint(2, len(WORDS), (len(PROMPTS), 5), generator=torch.Generator().manual_seed(1))
    response_mask = torch.ones_like(responses)
    response_mask[-1, 3:] = 0
    return (torch.cat([encoded["input_ids"], responses * response_mask], 1),
            torch.cat([encoded["attention_mask"], response_mask], 1), encoded["input_ids"].shape[1])


def _hf_logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits


@pytest.mark.parametrize("name", MODELS)
def test_plain_forward_equals_hugging_face_with_padding_and_cache(name):
    model = MODELS[name]()
    assert decoder.plain_forward(model) is not None  # else the comparisons below compare HF with itself
    ids, mask, prompt = _batch()
    valid = mask.bool()
    expected = _hf_logits(model, ids, mask)
    # one forward over whole rows, and the output layer on the last positions only
    logits, _ = decoder.forward(model, ids, mask, position_ids(mask))
    torch.testing.assert_close(logits[valid], expected[valid], atol=2e-5, rtol=1e-5)
    kept, _ = decoder.forward(model, ids, mask, position_ids(mask), logits_to_keep=3)
    torch.testing.assert_close(kept, logits[:, -3:], atol=2e-5, rtol=1e-5)
    # the prompts, then the responses on their cache (several tokens at once), then one token at a time
    with torch.no_grad():
        first, cache = decoder.forward(model, ids[:, :prompt], mask[:, :prompt], position_ids(mask)[:, :prompt])
        rest, cache = decoder.forward(model, ids[:, prompt:-2], mask[:, :-2], position_ids(mask)[:, prompt:-2], cache)
        steps = [decoder.forward(model, ids[:, t:t + 1], mask[:, :t + 1], position_ids(mask)[:, t:t + 1], cache)[0]
                 for t in range(ids.shape[1] - 2, ids.shape[1])]
    stitched = torch.cat([first, rest, *steps], 1)
    torch.testing.assert_close(stitched[valid], expected.detach()[valid], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_plain_forward_in_bfloat16_is_as_close_to_float32_as_hugging_faces(name):
    """A bfloat16 model: the plain forward's logits are no further from the float32 model's than model(...)'s are
    (its fused RMSNorm and GELU round differently, not worse)."""
    model = MODELS[name]()
    ids, mask, _ = _batch()
    valid = mask.bool()
    with torch.no_grad():
        exact = _hf_logits(model, ids, mask)[valid]
        model.to(torch.bfloat16)
        plain = decoder.forward(model, ids, mask, position_ids(mask))[0][valid]
        hf = _hf_logits(model, ids, mask)[valid]
    assert decoder.plain_forward(model) is not None and plain.dtype == hf.dtype == torch.bfloat16
    plain, hf = plain.float(), hf.float()
    assert (plain - exact).abs().max() <= 1.5 * (hf - exact).abs().max() + 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_plain_forward_gives_hugging_faces_parameter_gradients(name):
    model = MODELS[name]()
    ids, mask, _ = _batch()
    weights = torch.rand(*ids.shape, len(WORDS), generator=torch.Generator().manual_seed(2)) * mask[..., None]

    def grads(logits):
        model.zero_grad()
        (torch.log_softmax(logits, -1) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, hf = grads(decoder.forward(model, ids, mask, position_ids(mask))[0]), grads(_hf_logits(model, ids, mask))
    assert plain.keys() == hf.keys()
    for key in hf:
        torch.testing.assert_close(plain[key], hf[key], atol=1e-4, rtol=1e-4, msg=key)
    assert all(g.abs().sum() > 0 for g in hf.values())


@pytest.mark.parametrize("name", MODELS)
def test_sampling_through_the_plain_forward_draws_the_same_tokens(name):
    """generate (KV cache, shared prompts: rows reordered from one computation) and score: the same sampled tokens
    and log-probabilities as through model(...)."""
    model, tokenizer = MODELS[name](), tiny_tokenizer()
    tokenizer.padding_side = "left"
    encoded = tokenizer([PROMPTS[i] for i in (0, 1, 0, 3, 3, 2, 1, 0)], return_tensors="pt", padding=True)
    sampling = Sampling(max_new_tokens=9, min_new_tokens=2, temperature=0.9, eos_token_id=1, pad_token_id=0)

    def run():
        generated = generate(model, encoded["input_ids"], encoded["attention_mask"], sampling,
                             torch.Generator().manual_seed(3))
        return generated, score(model, generated, sampling)[0]

    plain_gen, plain_lp = run()
    decoder.set_enabled(False)
    try:
        assert decoder.plain_forward(model) is None
        hf_gen, hf_lp = run()
    finally:
        decoder.set_enabled(True)
    assert torch.equal(plain_gen.sequences, hf_gen.sequences) and plain_gen.response_mask.sum() > 20
    torch.testing.assert_close(plain_gen.logprobs, hf_gen.logprobs, atol=2e-5, rtol=0)
    torch.testing.assert_close(plain_lp, hf_lp, atol=2e-5, rtol=0)
    torch.testing.assert_close(plain_lp, plain_gen.logprobs, atol=2e-5, rtol=0)


def _with_lora(model, **options):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                                  **options)).eval()
    with torch.no_grad():  # B starts at zero (LoRA a no-op): random, so that the adapters change the logits
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_plain_forward_runs_lora_adapters_as_peft_does(name):
    """A PEFT LoRA model (GPT-2's Conv1D or Llama's Linear underneath): the same logits with the adapters and with
    them disabled (the reference under LoRA), and the same adapter gradients."""
    pytest.importorskip("peft")
    model = _with_lora(MODELS[name]())
    assert decoder.plain_forward(model) is not None
    ids, mask, _ = _batch()
    valid = mask.bool()

    def logits_and_grads(fn):
        model.zero_grad()
        logits = fn()
        (torch.log_softmax(logits, -1)[..., 3] * mask).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain, plain_grads = logits_and_grads(lambda: decoder.forward(model, ids, mask, position_ids(mask))[0])
    hf, hf_grads = logits_and_grads(lambda: _hf_logits(model, ids, mask))
    torch.testing.assert_close(plain[valid], hf[valid], atol=2e-5, rtol=1e-5)
    assert len(hf_grads) > 0 and all("lora_" in n for n in hf_grads)
    for key in hf_grads:
        torch.testing.assert_close(plain_grads[key], hf_grads[key], atol=1e-4, rtol=1e-4, msg=key)
    with torch.no_grad(), model.disable_adapter():
        off = decoder.forward(model, ids, mask, position_ids(mask))[0]
        torch.testing.assert_close(off[valid], _hf_logits(model, ids, mask)[valid], atol=2e-5, rtol=1e-5)
    assert (off[valid] - plain[valid]).abs().max() > 1e-2  # the adapters matter


@pytest.mark.parametrize("name", [*MODELS, "llama-lora"])
def test_the_critics_body_runs_plainly_with_hugging_faces_values_and_gradients(name):
    """The value model (a copy of the policy's body, LoRA adapters included): the same values and gradients as
    through the body's model(...)."""
    from symrl.rlhf.models import value_model_for  # noqa: PLC0415

    if name == "llama-lora":
        pytest.importorskip("peft")
    policy = _with_lora(tiny_llama()) if name == "llama-lora" else MODELS[name]()
    critic = value_model_for(policy).eval()
    with torch.no_grad():
        critic.head.weight.normal_()  # zero-initialised: values would be 0 whatever the body did
    assert decoder.plain_forward(critic.body) is not None
    ids, mask, _ = _batch()

    def values_and_grads():
        critic.zero_grad()
        values = critic(ids, mask, position_ids(mask))
        (values * mask).sum().backward()
        return values.detach(), {n: p.grad.clone() for n, p in critic.named_parameters() if p.grad is not None}

    plain, plain_grads = values_and_grads()
    decoder.set_enabled(False)
    try:
        hf, hf_grads = values_and_grads()
    finally:
        decoder.set_enabled(True)
    torch.testing.assert_close(plain[mask.bool()], hf[mask.bool()], atol=2e-5, rtol=1e-5)
    assert plain_grads.keys() == hf_grads.keys() and len(hf_grads) > 2
    for key in hf_grads:
        torch.testing.assert_close(plain_grads[key], hf_grads[key], atol=1e-4, rtol=1e-4, msg=key)


def test_what_the_plain_forward_does_not_cover_goes_through_the_model():
    model = tiny_gpt2()
    assert decoder.plain_forward(model.train()) is None  # dropout, gradient checkpointing
    model.eval()
    handle = model.transformer.h[1].mlp.register_forward_hook(lambda module, args, out: out * 2)
    assert decoder.plain_forward(model) is None
    ids, mask, _ = _batch()
    torch.testing.assert_close(decoder.forward(model, ids, mask, position_ids(mask))[0], _hf_logits(model, ids, mask))
    handle.remove()
    assert decoder.plain_forward(model) is not None
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)  # as accelerate's mixed precision does
    assert decoder.plain_forward(model) is None
    del model.forward
    model.compile()
    assert decoder.plain_forward(model) is None
    model._compiled_call_impl = None
    assert decoder.plain_forward(model) is not None
    mlp = model.transformer.h[0].mlp
    mlp.c_fc = torch.nn.Sequential(mlp.c_fc)  # a submodule replaced after the first use: seen, and not covered
    assert decoder.plain_forward(model) is None

    class Subclass(transformers.GPT2LMHeadModel):  # may override anything
        pass

    upcast = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(WORDS), reorder_and_upcast_attn=True)
    sliding = dict(use_sliding_window=True, sliding_window=4, max_window_layers=0)
    models = [Subclass(model.config).eval(), transformers.GPT2LMHeadModel(upcast).eval(),
                   tiny_llama(hidden_act="gelu_fast"), tiny_llama("Qwen2ForCausalLM", **sliding)]
    if importlib.util.find_spec("peft") is not None:
        models.append(_with_lora(tiny_llama(), use_dora=True))
    for unsupported in models:
        assert decoder.plain_forward(unsupported) is None, type(unsupported).__name__
