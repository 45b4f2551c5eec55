"""symrl's OpenRLHF loss module checked against the real OpenRLHF 0.11.x ``PolicyLoss`` (no GPU needed).

Run in OpenRLHF's own environment (OpenRLHF pins flash-attn, which cannot be built without CUDA):
    bash benchmarks/setup_openrlhf.sh && .venv-openrlhf/bin/python benchmarks/check_openrlhf.py

``openrlhf.models`` imports flash-attn (its ring-attention helpers) when it is imported, so this script, and only
this script, puts an empty ``flash_attn`` package (and the two submodules OpenRLHF imports names from) into
``sys.modules`` first; their functions raise if called, and nothing here calls them. Everything else is the
installed package: ``PolicyLoss`` and ``aggregate_loss`` from ``openrlhf.models``, with the real DeepSpeed,
transformers and peft it imports.

What it checks, each printed as PASS/FAIL (exit status 1 on any FAIL):
1. symrl's ``SymmetricPolicyLoss`` takes ``PolicyLoss``'s constructor (same names, order and defaults) and call
   (same names, order and defaults, plus unknown keyword arguments), and returns the same five outputs;
2. with alpha = 1, beta = 0 its outputs and gradient equal the real ``PolicyLoss`` in each aggregation
   (per token / per sequence, with and without the global batch sizes and data-parallel size), with and without the
   dual clip, with the train/rollout importance-sampling correction off and in each of its modes;
3. with beta > 0 its value and gradient equal SPEC §1 transcribed below (not through symrl's code), aggregated as
   OpenRLHF documents it, for the authors' mask and the unmasked variant;
4. with the authors' mask its gradient is ``alpha + beta * |z|`` times the real ``PolicyLoss``'s (SPEC §1.1), in every
   configuration of 2;
5. bad input: an asymmetric clip range, GSPO, an invalid correction setting, an unsupported OpenRLHF version.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import inspect
import re
import sys
import traceback
import types

import torch


def stub_flash_attn() -> None:
    """flash-attn is CUDA-only; OpenRLHF imports these names from it at import time (models/ring_attn_utils.py)."""

    def unavailable(*args, **kwargs):
        raise RuntimeError("flash_attn is a stub in benchmarks/check_openrlhf.py")

    names = {"flash_attn": {}, "flash_attn.bert_padding": dict.fromkeys(
        ["index_first_axis", "pad_input", "rearrange", "unpad_input"], unavailable),
        "flash_attn.utils": {}, "flash_attn.utils.distributed": {"all_gather": unavailable}}
    for name, attrs in names.items():
        module = types.ModuleType(name)
        package = name in ("flash_attn", "flash_attn.utils")
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=package)
        if package:
            module.__path__ = []
        module.__dict__.update(attrs)
        sys.modules[name] = module


stub_flash_attn()
from openrlhf.models import PolicyLoss, aggregate_loss  # noqa: E402

from symrl.integrations.openrlhf import SymmetricPolicyLoss, check_openrlhf_version  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail else ''}", flush=True)


def close(a, b, dtype) -> tuple[bool, str]:
    if a is None or b is None:
        return a is None and b is None, f"{a} vs {b}"
    a = torch.as_tensor(a).detach().to(torch.float64)
    b = torch.as_tensor(b).detach().to(torch.float64)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    err = float((a - b).abs().max())
    return bool(torch.isfinite(a).all()) and err <= tol * max(1.0, float(b.abs().max())), f"{err:.1e}"


# --- SPEC §1, transcribed per token (the authors' formulas; OpenRLHF's dual clip added as SPEC §1's mask implies) --
def spec_token_loss(lp, old, adv, *, eps, alpha, beta, z, c=None, authors_mask=True):
    """alpha * L_PPO + beta * L_rPPO per token: L_PPO = -min(r A, clip(r, 1-eps, 1+eps) A), r = p / p_old, and -c A under
    a dual clip c (A < 0 and r > c); L_rPPO = -Z m A (1 - p) / p_old with m = 1 where the clipped objective has a
    gradient ((1-eps <= r <= 1+eps) or r A <= clip(r) A, and not under the dual clip), or m = 1 everywhere (unmasked)."""
    p, p_old = lp.exp(), old.exp()
    r = p / p_old
    clipped = r.clamp(1 - eps, 1 + eps)
    l_ppo = -torch.min(r * adv, clipped * adv)
    dual = (adv < 0) & (r > c) if c is not None else torch.zeros_like(r, dtype=torch.bool)
    l_ppo = torch.where(dual, -c * adv if c is not None else l_ppo, l_ppo)
    m = ((((r >= 1 - eps) & (r <= 1 + eps)) | (r * adv <= clipped * adv)) & ~dual) if authors_mask \
        else torch.ones_like(r, dtype=torch.bool)
    return alpha * l_ppo + beta * (-z * m.to(r.dtype) * adv * (1 - p) / p_old)


def openrlhf_aggregate(mat, mask, token_level, dp_size=1, batch_num_tokens=None, global_batch_size=None):
    """OpenRLHF's two reductions, as its aggregate_loss docstring states them: per token, the masked sum over the
    global token count; per sample, the sum of per-sequence token means over the global count of non-empty sequences;
    both times dp_size (DeepSpeed averages gradients over ranks). Without global counts, this micro-batch's.
    (OpenRLHF adds 1e-8 to each sequence's token count, a 1e-9 relative difference that float64 resolves: kept.)"""
    mask = mask.to(mat.dtype)
    if token_level:
        return (mat * mask).sum() / (mask.sum() if batch_num_tokens is None else batch_num_tokens) * dp_size
    tokens = mask.sum(-1)
    nonempty = tokens > 0
    seq = (mat * mask).sum(-1)[nonempty] / (tokens[nonempty] + 1e-8)
    return seq.sum() / (nonempty.sum() if global_batch_size is None else global_batch_size) * dp_size


def tensors(dtype, seed=0, B=6, T=11):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 4 - 0.05
    log_ratio = 0.25 * torch.randn(B, T, generator=g, dtype=dtype)
    log_ratio[0, :4] = torch.tensor([1.3, 1.6, -0.9, 0.5], dtype=dtype)  # ratios 3.7, 5.0 (dual clip at 3), 0.4, 1.6
    lp = (old + log_ratio).clamp(max=-1e-3)
    adv = torch.randn(B, T, generator=g, dtype=dtype)
    adv[0, :2] = -1.0
    mask = (torch.rand(B, T, generator=g) > 0.25).to(dtype)
    mask[2] = 0  # a sequence with no response tokens
    mask[0, :4] = 1
    if dtype == torch.float32:
        mask = mask.bool()  # OpenRLHF's action_mask is boolean; float64 runs take a 0/1 float mask
    # the rollout engine's log-probs: close to the trainer's, a few far off (filtered or clipped by the correction)
    rollout = (old + 0.05 * torch.randn(B, T, generator=g, dtype=dtype)).clamp(max=-1e-3)
    rollout[1, :3] = old[1, :3] - torch.tensor([1.2, -2.5, 0.9], dtype=dtype)
    return lp, old, adv, mask, rollout


def run(module, lp, old, adv, mask, rollout, batch, **extra):
    lp = lp.detach().clone().requires_grad_()
    out = module(lp, old, adv, action_mask=mask, rollout_log_probs=rollout, **batch, **extra)
    out[0].backward()
    return out, lp.grad


def main() -> int:
    import deepspeed  # noqa: PLC0415
    import openrlhf.models.loss as loss_module  # noqa: PLC0415

    version = importlib.metadata.version("openrlhf")
    print(f"OpenRLHF {version} ({loss_module.__file__}), torch {torch.__version__}, deepspeed {deepspeed.__version__}, "
          f"transformers {importlib.metadata.version('transformers')}, python {sys.version.split()[0]}; "
          f"stubbed: {sorted(n for n in sys.modules if n.split('.')[0] == 'flash_attn')}")
    check("PolicyLoss and DeepSpeed are the installed packages", "site-packages" in inspect.getfile(PolicyLoss)
          and "site-packages" in (deepspeed.__file__ or ""), inspect.getfile(PolicyLoss))

    # 1. signatures
    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    real_init, ours_init = params(PolicyLoss.__init__), params(SymmetricPolicyLoss.__init__)
    check("constructor: PolicyLoss's parameters, in order, with its defaults",
          [(n, k, tuple(d) if isinstance(d, list) else d) for n, k, d in ours_init[:len(real_init)]] ==
          [(n, k, tuple(d) if isinstance(d, list) else d) for n, k, d in real_init]
          and all(k == inspect.Parameter.KEYWORD_ONLY for _, k, _ in ours_init[len(real_init):]),
          f"extra keyword-only: {[n for n, _, _ in ours_init[len(real_init):]]}")
    real_fwd, ours_fwd = params(PolicyLoss.forward), params(SymmetricPolicyLoss.forward)
    check("forward: PolicyLoss's parameters, in order, with its defaults, then **kwargs",
          ours_fwd[:len(real_fwd)] == real_fwd and [k for _, k, _ in ours_fwd[len(real_fwd):]] ==
          [inspect.Parameter.VAR_KEYWORD], f"{[n for n, _, _ in ours_fwd]}")

    dual_cases = {"no dual clip": None, "dual clip 3": 3.0}
    correction_cases = {
        "correction off": {},
        "token mask ratio": {"is_correction_level": "token"},
        "token clip ratio": {"is_correction_level": "token", "is_correction_mode": "clip",
                             "is_correction_threshold": (0.8, 1.5)},
        "seq mask ratio": {"is_correction_level": "seq", "is_correction_threshold": (0.8, 1.25)},
        "token mask binary_kl": {"is_correction_level": "token", "is_correction_gating": "binary_kl",
                                 "is_correction_threshold": (0.0, 0.02)},
        "seq mask tv": {"is_correction_level": "seq", "is_correction_gating": "tv", "is_correction_threshold": (0, 0.05)},
    }
    c_total = 0.5 + 0.4 * 1.0
    for dtype in (torch.float64, torch.float32):
        lp, old, adv, mask, rollout = tensors(dtype)
        r = (lp - old).exp()
        dname = str(dtype).removeprefix("torch.")
        print(f"-- {dname}: {int(mask.sum())} response tokens of {mask.numel()}, "
              f"{int((((r < 0.8) | (r > 1.2)) * mask).sum())} outside the clip range, "
              f"{int(((adv < 0) & (r > 3) & mask.bool()).sum())} under a dual clip at 3")
        tokens = float(mask.sum())
        batches = {"micro-batch": {}, "rank 0 of 2": {"dp_size": 2, "batch_num_tokens": torch.tensor(2 * tokens + 3),
                                                      "global_batch_size": torch.tensor(11.0)}}
        for token_level in (True, False):
            agg = "per-token" if token_level else "per-sequence"
            for bname, batch in batches.items():
                for dname_, dual in dual_cases.items():
                    for cname, corr in correction_cases.items():
                        tag = f"[{dname}, {agg}, {bname}, {dname_}, {cname}]"
                        real = PolicyLoss(0.2, 0.2, dual, token_level, **corr)
                        one = SymmetricPolicyLoss(0.2, 0.2, dual, token_level, **corr, alpha=1.0, beta=0.0)
                        sym = SymmetricPolicyLoss(0.2, 0.2, dual, token_level, **corr, alpha=0.5, beta=0.4)
                        (r_out, r_grad), (o_out, o_grad) = (run(real, lp, old, adv, mask, rollout, batch),
                                                            run(one, lp, old, adv, mask, rollout, batch))
                        # 2. alpha = 1, beta = 0 is the real PolicyLoss, all five outputs and the gradient
                        oks = [close(a, b, dtype) for a, b in zip((*o_out, o_grad), (*r_out, r_grad), strict=True)]
                        check(f"alpha=1 beta=0 == PolicyLoss {tag}: 5 outputs, gradient", all(ok for ok, _ in oks),
                              " ".join(d for _, d in oks))
                        # 4. SPEC §1.1 against the real class
                        s_out, s_grad = run(sym, lp, old, adv, mask, rollout, batch)
                        ok, d = close(s_grad, c_total * r_grad, dtype)
                        check(f"SPEC §1.1: gradient == {c_total:g} x PolicyLoss's {tag}", ok, d)
                        if corr:
                            continue
                        # 3. beta > 0 vs the transcription, both masks
                        for authors_mask in (True, False):
                            mod = SymmetricPolicyLoss(0.2, 0.2, dual, token_level, alpha=0.5, beta=0.4, z=-1.0,
                                                      reverse_mask="ppo" if authors_mask else "none")
                            (loss, *_), grad = run(mod, lp, old, adv, mask, rollout, batch)
                            ref_lp = lp.detach().clone().requires_grad_()
                            ref = openrlhf_aggregate(spec_token_loss(ref_lp, old, adv, eps=0.2, alpha=0.5, beta=0.4,
                                                                     z=-1.0, c=dual, authors_mask=authors_mask),
                                                     mask, token_level, **batch)
                            ref.backward()
                            ok_v, d_v = close(loss, ref.detach(), dtype)
                            ok_g, d_g = close(grad, ref_lp.grad, dtype)
                            variant = "authors' mask" if authors_mask else "unmasked"
                            check(f"SPEC transcription, {variant} {tag}: value, gradient", ok_v and ok_g, f"{d_v} {d_g}")
        # OpenRLHF's aggregate_loss is what the transcription's reduction describes
        mat = torch.rand_like(lp)
        for token_level in (True, False):
            for batch in batches.values():
                ok, d = close(aggregate_loss(mat, mask, token_level, **batch),
                              openrlhf_aggregate(mat, mask, token_level, **batch), dtype)
                check(f"[{dname}] OpenRLHF's aggregate_loss == the documented reduction (token_level={token_level})", ok, d)

    # unknown keyword arguments pass through; a control that the §1.1 comparison can fail
    lp, old, adv, mask, rollout = tensors(torch.float64)
    a, _ = run(SymmetricPolicyLoss(alpha=0.5, beta=0.4), lp, old, adv, mask, rollout, {}, a_future_argument=1)
    b, _ = run(SymmetricPolicyLoss(alpha=0.5, beta=0.4), lp, old, adv, mask, rollout, {})
    check("an unknown keyword argument to forward is accepted and changes nothing", close(a[0], b[0], torch.float64)[0])
    _, real_grad = run(PolicyLoss(), lp, old, adv, mask, rollout, {})
    _, unmasked = run(SymmetricPolicyLoss(alpha=0.5, beta=0.4, reverse_mask="none"), lp, old, adv, mask, rollout, {})
    check("control: the unmasked reverse term is NOT a rescaling of PolicyLoss",
          not close(unmasked, c_total * real_grad, torch.float64)[0])

    # 5. bad input
    def raises(name, fn, pattern):
        try:
            fn()
        except Exception as error:  # noqa: BLE001
            check(name, re.search(pattern, str(error)) is not None, f"{type(error).__name__}: {str(error)[:150]}")
        else:
            check(name, False, "no error raised")

    raises("asymmetric clip range -> clear error", lambda: SymmetricPolicyLoss(0.2, 0.28), "clip_eps_high = clip_eps_low")
    raises("GSPO -> clear error", lambda: SymmetricPolicyLoss(policy_loss_type="gspo"), "'ppo' only")
    raises("invalid correction level -> OpenRLHF's error",
           lambda: SymmetricPolicyLoss(is_correction_level="batch"), "must be off/token/seq")
    raises("correction on without rollout log-probs -> clear error", lambda: run(
        SymmetricPolicyLoss(is_correction_level="token"), lp, old, adv, mask, None, {}), "needs rollout_log_probs")
    raises("unsupported OpenRLHF version -> error naming the supported range",
           lambda: check_openrlhf_version("0.12.1"), r">=0\.11,<0\.12.*0\.12\.1")
    try:
        check_openrlhf_version()
        check(f"the installed OpenRLHF {version} is in the supported range", True)
    except Exception as error:  # noqa: BLE001
        check(f"the installed OpenRLHF {version} is in the supported range", False, str(error))

    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a crash is a failed check
        traceback.print_exc()
        sys.exit(1)
