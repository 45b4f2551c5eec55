"""The causal LM's forward pass, written plainly for the architectures symrl knows: GPT-2, Llama, Qwen2 and Qwen3.

Hugging Face's ``model(...)`` serves every cache type, mask format, attention kernel, output capture and hook;
on a small model its Python costs about as much as the arithmetic (``benchmarks/bench_grpo_vs_trl.py --hf-forward``
against the default measures what this saves; benchmarks/RESULTS.md). :func:`forward` runs the same arithmetic on
the model's own modules and parameters, so gradients, optimizers, ``state_dict`` and saving are untouched, and
the logits equal Hugging Face's up to float rounding (tests/test_rlhf_decoder.py). The rounding differs only
where a fused kernel replaces a chain of ops: GPT-2's tanh-approximated GELU and Llama's RMSNorm.

Covered: ``GPT2LMHeadModel``, ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` and ``Qwen3ForCausalLM`` (without
sliding-window layers) and their bodies (``GPT2Model``, ``LlamaModel``, ``Qwen2Model``, ``Qwen3Model``: the
critic's), in evaluation mode, alone or under PEFT's plain LoRA (adapters on any of their linear layers;
``disable_adapter()`` honoured). Everything else goes through ``model(...)``: another architecture, class or config
option, a model in training mode (dropout, gradient checkpointing), forward hooks or a replaced ``forward``
(accelerate's offloading and mixed precision), ``module.compile()``, quantised or DoRA layers, wrappers (DDP,
``torch.compile``), torch before 2.5. ``set_enabled(False)`` sends every model through ``model(...)``.
"""

from __future__ import annotations

import functools
import weakref
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

_enabled = True
_plain: "weakref.WeakKeyDictionary[nn.Module, tuple[Optional[Callable], list[nn.Module]]]" = weakref.WeakKeyDictionary()


def set_enabled(enabled: bool) -> None:
    """Use the plain forward for the models it covers (default), or ``model(...)`` for every model."""
    global _enabled
    _enabled = bool(enabled)


class KVCache:
    """Keys and values of the tokens computed so far: per layer ``[B, kv_heads, L, head_dim]``. Outside autograd
    (sampling) each layer's tensors are views of a buffer that doubles when full, so a decoding step writes one
    position instead of copying the whole cache; under autograd they are concatenated (the graph keeps them)."""

    def __init__(self, layers: int):
        self.layers: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [None] * layers
        self.buffers: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [None] * layers
        self.run: Optional[Callable] = None  # the plain forward that began it, and continues it (set by forward)

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past = self.layers[layer]
        if past is None:
            self.layers[layer] = keys, values
        elif torch.is_grad_enabled():
            self.layers[layer] = torch.cat([past[0], keys], 2), torch.cat([past[1], values], 2)
        else:
            start, end = past[0].shape[2], past[0].shape[2] + keys.shape[2]
            buffers = self.buffers[layer]
            if buffers is None or buffers[0].shape[2] < end:
                shape = (*keys.shape[:2], 2 * end, keys.shape[3])
                buffers = keys.new_empty(shape), values.new_empty(shape)
                buffers[0][:, :, :start], buffers[1][:, :, :start] = past
                self.buffers[layer] = buffers
            buffers[0][:, :, start:end], buffers[1][:, :, start:end] = keys, values
            self.layers[layer] = buffers[0][:, :, :end], buffers[1][:, :, :end]
        return self.layers[layer]

    def reorder_cache(self, index: torch.Tensor) -> None:
        """Row ``i`` becomes row ``index[i]`` (as Hugging Face's caches do)."""
        self.layers = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                       for kv in self.layers]
        self.buffers = [None] * len(self.layers)


def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
            past=None, logits_to_keep: int = 0, use_cache: bool = False) -> tuple[torch.Tensor, object]:
    """``(logits, cache)`` of a causal LM, or ``(last hidden states, cache)`` of its body (the critic's), for
    ``input_ids`` ``[B, n]`` after the tokens in ``past``, with ``attention_mask`` ``[B, L_past + n]`` (0 = padding,
    never attended) and ``position_ids`` ``[B, n]``, as ``model(...)`` takes them; ``logits_to_keep`` > 0 computes
    the output on the last positions only. A :class:`KVCache` continues with the plain forward that began it (the
    model was checked then: a decoding step does not walk its modules again)."""
    if isinstance(past, KVCache):
        return past.run(input_ids, attention_mask, position_ids, past, logits_to_keep)
    plain = plain_forward(model) if past is None else None
    if plain is None:
        keep = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=past, use_cache=use_cache, **keep)
        return (out.logits if hasattr(out, "logits") else out.last_hidden_state), out.past_key_values
    output, cache = plain(input_ids, attention_mask, position_ids, None, logits_to_keep)
    cache.run = plain
    return output, cache


def plain_forward(model: nn.Module) -> Optional[Callable]:
    """The plain forward for ``model``, or ``None`` where ``model(...)`` must run it (see the module's docstring)."""
    if not _enabled or model.training:
        return None
    modules = _submodules(model)
    built = _plain.get(model)
    if built is None or built[1] != modules:  # first seen, or submodules replaced since (adapters injected in place)
        built = _plain[model] = _build(model), modules
    return None if built[0] is None or _has_hooks(modules) else built[0]


def _submodules(model: nn.Module) -> list[nn.Module]:
    """``model`` and all its submodules, in a fixed order (4x faster than ``list(model.modules())``: it runs per call)."""
    found, stack = [], [model]
    while stack:
        module = stack.pop()
        found.append(module)
        stack.extend(child for child in module._modules.values() if child is not None)
    return found


def _has_hooks(modules: list[nn.Module]) -> bool:
    """Forward hooks anywhere, a replaced ``forward`` (accelerate's offloading hooks and mixed-precision autocast) or
    ``module.compile()``: ``model(...)`` must run them."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ or "_hf_hook" in m.__dict__
               or getattr(m, "_compiled_call_impl", None) is not None for m in modules)


def _build(model: nn.Module) -> Optional[Callable]:
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 5):
        return None  # F.rms_norm and scaled_dot_product_attention(enable_gqa=...) came with torch 2.4 and 2.5
    try:
        from transformers import (
            GPT2LMHeadModel,
            GPT2Model,
            LlamaForCausalLM,
            LlamaModel,
            Qwen2ForCausalLM,
            Qwen2Model,
            Qwen3ForCausalLM,
            Qwen3Model,
        )
    except ImportError:
        return None
    inner = _lora_inner(model)
    kind = type(inner)
    if kind is GPT2LMHeadModel:
        return _with_head(_gpt2(inner.transformer), inner.lm_head)
    if kind in (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM):
        return _with_head(_llama(inner.model), inner.lm_head)
    if kind in (LlamaModel, Qwen2Model, Qwen3Model):
        return _llama(inner)
    return _gpt2(inner) if kind is GPT2Model else None


def _with_head(body: Optional[Callable], lm_head: nn.Module) -> Optional[Callable]:
    """A causal LM's forward: its body's, then the output layer."""
    head = _linear_layer(lm_head)
    if body is None or head is None:
        return None

    def run(*args):
        hidden, cache = body(*args)
        return head(hidden), cache

    return run


def _lora_inner(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT LoRA model (its linear layers then carry the adapters), else ``model``."""
    try:
        from peft import PeftModel, PeftModelForCausalLM
        from peft.tuners.lora import LoraModel
    except ImportError:
        return model
    if type(model) in (PeftModel, PeftModelForCausalLM) and type(model.base_model) is LoraModel:
        return model.base_model.model
    return model


def _linear_layer(module: nn.Module) -> Optional[Callable]:
    """``x -> module(x)`` for an ``nn.Linear``, GPT-2's ``Conv1D`` (``x @ W + b``, W stored ``[in, out]``) or a PEFT
    LoRA layer over one of them (``base(x) + B(A(x)) * scaling`` per active adapter, plain LoRA only; whether the
    adapters are on is read at each call, so ``disable_adapter()`` works); ``None`` for anything else."""
    from transformers.pytorch_utils import Conv1D

    if type(module) is nn.Linear:
        return lambda x: F.linear(x, module.weight, module.bias)
    if type(module) is Conv1D:
        return lambda x: torch.addmm(module.bias, x.reshape(-1, x.shape[-1]), module.weight).view(*x.shape[:-1], -1)
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:
        return None
    base = _linear_layer(module.base_layer) if type(module) is LoraLinear else None
    if base is None or module.lora_variant or any(
            type(m) is not nn.Linear or m.weight.dtype != module.base_layer.weight.dtype
            for m in (*module.lora_A.values(), *module.lora_B.values())):
        return None  # DoRA and other variants, other dtypes

    def lora(x):
        y = base(x)
        if module.disable_adapters or module.merged:
            return y
        for name in module.active_adapters:
            if name in module.lora_A:  # dropout is off: the model is not in training mode
                a, b = module.lora_A[name], module.lora_B[name]
                y = y + F.linear(F.linear(x, a.weight, a.bias), b.weight, b.bias) * module.scaling[name]
        return y

    return lora


def _linear_layers(*modules: nn.Module) -> Optional[list[Callable]]:
    layers = [_linear_layer(m) for m in modules]
    return None if any(layer is None for layer in layers) else layers


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attention_mask: torch.Tensor, scale: float,
            all_valid: bool) -> torch.Tensor:
    """Causal attention of the last ``n`` positions (``q``: ``[B, heads, n, d]``) over all ``L`` keys, padding keys
    excluded. A padding query attends to itself as well (a row with no key would be NaN, and NaN values poison
    the matmul even where their weight is 0); no real token attends to it."""
    n, length = q.shape[2], k.shape[2]
    gqa = k.shape[1] != q.shape[1]
    if all_valid and (n == 1 or n == length):  # no padding: plain causal attention (top-left aligned: no past)
        return F.scaled_dot_product_attention(q, k, v, is_causal=n > 1, scale=scale, enable_gqa=gqa)
    query = torch.arange(length - n, length, device=q.device)[:, None]
    key = torch.arange(length, device=q.device)[None, :]
    allowed = (key <= query) & (attention_mask.bool()[:, None, :] | (key == query))  # [B, n, L]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], scale=scale, enable_gqa=gqa)


def _keep(x: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
    return x[:, -logits_to_keep:] if logits_to_keep > 0 else x


_ACTIVATIONS = {"gelu_new": functools.partial(F.gelu, approximate="tanh"), "gelu": F.gelu, "relu": F.relu,
                "silu": F.silu, "swish": F.silu}
_ACTIVATIONS["gelu_pytorch_tanh"] = _ACTIVATIONS["gelu_new"]  # the same formula


def _gpt2(body) -> Optional[Callable]:
    """GPT-2's body (``GPT2Model``): ``(last hidden states, cache)``."""
    config = body.config
    linears = [_linear_layers(b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj) for b in body.h]
    if (config.add_cross_attention or config.reorder_and_upcast_attn or config.activation_function not in _ACTIVATIONS
            or any(layer is None for layer in linears)
            or type(body.wte) is not nn.Embedding or type(body.wpe) is not nn.Embedding):
        return None
    act = _ACTIVATIONS[config.activation_function]
    heads = config.num_attention_heads

    def norm(ln, x):
        return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    def run(input_ids, attention_mask, position_ids, past, logits_to_keep):
        cache = past if past is not None else KVCache(len(body.h))
        batch, n = input_ids.shape
        all_valid = bool(attention_mask.all())
        x = body.wte(input_ids) + body.wpe(position_ids)
        for i, (block, (qkv, out, up, down)) in enumerate(zip(body.h, linears, strict=True)):
            q, k, v = qkv(norm(block.ln_1, x)).view(batch, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
            k, v = cache.extend(i, k, v)
            a = _attend(q, k, v, attention_mask, block.attn.scaling, all_valid)
            x = x + out(a.transpose(1, 2).reshape(batch, n, -1))
            x = x + down(act(up(norm(block.ln_2, x))))
        return norm(body.ln_f, _keep(x, logits_to_keep)), cache

    return run


def _llama(body) -> Optional[Callable]:
    """The body of Llama, Qwen2 and Qwen3 (``LlamaModel``, ``Qwen2Model``, ``Qwen3Model``: Qwen3 adds an RMSNorm of
    each head's queries and keys): ``(last hidden states, cache)``."""
    config, layers = body.config, body.layers
    linears = [_linear_layers(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                              layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)
               for layer in layers]
    if ("sliding_attention" in (getattr(config, "layer_types", None) or ()) or config.hidden_act not in _ACTIVATIONS
            or any(layer is None for layer in linears) or type(body.embed_tokens) is not nn.Embedding):
        return None
    head_norms = [(getattr(layer.self_attn, "q_norm", None), getattr(layer.self_attn, "k_norm", None)) for layer in layers]
    act = _ACTIVATIONS[config.hidden_act]

    def norm(module, x):
        return F.rms_norm(x, module.weight.shape, module.weight, module.variance_epsilon)

    def rotate(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def run(input_ids, attention_mask, position_ids, past, logits_to_keep):
        cache = past if past is not None else KVCache(len(layers))
        batch, n = input_ids.shape
        all_valid = bool(attention_mask.all())
        x = body.embed_tokens(input_ids)
        cos, sin = (t[:, None] for t in body.rotary_emb(x, position_ids))  # [B, 1, n, head_dim]
        for i, (layer, (q_proj, k_proj, v_proj, o_proj, gate, up, down), (q_norm, k_norm)) in enumerate(
                zip(layers, linears, head_norms, strict=True)):
            head_dim = layer.self_attn.head_dim
            h = norm(layer.input_layernorm, x)
            q, k, v = (proj(h).view(batch, n, -1, head_dim) for proj in (q_proj, k_proj, v_proj))
            if q_norm is not None:
                q, k = norm(q_norm, q), norm(k_norm, k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            k, v = cache.extend(i, rotate(k, cos, sin), v)
            a = _attend(rotate(q, cos, sin), k, v, attention_mask, layer.self_attn.scaling, all_valid)
            x = x + o_proj(a.transpose(1, 2).reshape(batch, n, -1))
            h = norm(layer.post_attention_layernorm, x)
            x = x + down(act(gate(h)) * up(h))
        return norm(body.norm, _keep(x, logits_to_keep)), cache

    return run
