"""symrl's veRL plug-in checked against the real veRL 0.9.x (no GPU needed).

Run in veRL's own environment (veRL pins tensordict and transformers below what the main environment has):
    bash benchmarks/setup_verl.sh && .venv-verl/bin/python benchmarks/check_verl.py

What it checks, each printed as PASS/FAIL (exit status 1 on any FAIL):
1. discovery: ``import verl`` alone loads symrl's ``verl.plugins`` entry point, and ``get_policy_loss_fn("symmetric_ppo")``
   is symrl's loss (symrl is not imported by this script before that);
2. configuration: veRL's own Hydra config (ppo_trainer.yaml) with the documented overrides instantiates the real
   ``ActorConfig`` with symrl's ``SymmetricPolicyLossConfig``, whose values reach the loss;
3. the loss on random tensors (some tokens under veRL's dual clip, a fully masked sequence), called as veRL's actor
   calls it: its value and gradient equal SPEC §1 transcribed below (not through symrl's code), aggregated by veRL's
   ``agg_loss``, in every ``loss_agg_mode`` found in veRL's source, with and without veRL's global batch sizes and
   rollout importance weights, for the authors' mask and the unmasked variant;
4. with alpha = 1, beta = 0 the value, gradient and metrics equal veRL's ``vanilla`` loss in every mode;
5. with the authors' mask the gradient is ``alpha + beta * |z|`` times vanilla's (SPEC §1.1);
6. bad input: an asymmetric clip range, an unknown aggregation mode, an unsupported veRL version raise clear errors.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import re
import sys
import traceback

import torch

assert "symrl" not in sys.modules

import verl  # noqa: E402  - this alone must load symrl's plug-in through the entry point
from verl.trainer.ppo import core_algos  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail else ''}", flush=True)


def close(a: torch.Tensor, b: torch.Tensor) -> tuple[bool, str]:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    tol = 1e-12 if DTYPE == torch.float64 else 1e-5
    err = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.isfinite(a).all()) and err <= tol * max(1.0, scale), f"max |diff| {err:.2e}"


# --- SPEC §1, transcribed per token (the authors' formulas; veRL's dual clip added as SPEC §1's mask implies) ----
def spec_token_loss(lp, old, adv, *, eps, alpha, beta, z, c, authors_mask=True):
    """alpha * L_PPO + beta * L_rPPO per token, before aggregation.

    L_PPO = -min(r A, clip(r, 1-eps, 1+eps) A), r = p / p_old; under veRL's dual clip (A < 0 and r > c) it is -c A.
    L_rPPO = -Z m A (1 - p) / p_old, m = 1 where the clipped objective has a gradient: (1-eps <= r <= 1+eps) or
    r A <= clip(r) A, and not under the dual clip; m = 1 everywhere for the unmasked variant.
    """
    p, p_old = lp.exp(), old.exp()
    r = p / p_old
    clipped = r.clamp(1 - eps, 1 + eps)
    l_ppo = -torch.min(r * adv, clipped * adv)
    dual = (adv < 0) & (r > c)
    l_ppo = torch.where(dual, -c * adv, l_ppo)
    if authors_mask:
        m = (((r >= 1 - eps) & (r <= 1 + eps)) | (r * adv <= clipped * adv)) & ~dual
    else:
        m = torch.ones_like(r, dtype=torch.bool)
    l_rev = -z * m.to(r.dtype) * adv * (1 - p) / p_old
    return alpha * l_ppo + beta * l_rev


def agg_modes() -> list[str]:
    """Every loss_agg_mode named in veRL's agg_loss."""
    source = inspect.getsource(core_algos.agg_loss)
    return sorted(set(re.findall(r'"((?:token|seq)-[a-z-]+)"', source)))


def tensors(dtype, seed=0, B=6, T=11):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 4 - 0.05
    log_ratio = 0.25 * torch.randn(B, T, generator=g, dtype=dtype)
    log_ratio[0, :4] = torch.tensor([1.3, 1.6, -0.9, 0.5], dtype=dtype)  # ratios 3.7, 5.0 (dual clip), 0.4, 1.6
    lp = (old + log_ratio).clamp(max=-1e-3)
    adv = torch.randn(B, T, generator=g, dtype=dtype)
    adv[0, :2] = -1.0  # negative advantage where the ratio exceeds 3: veRL's dual clip
    mask = torch.rand(B, T, generator=g) > 0.25
    mask[2] = False  # a sequence with no response tokens (veRL excludes it from seq-mean modes)
    mask[0, :4] = True
    weights = 0.5 + torch.rand(B, T, generator=g, dtype=dtype)
    return lp, old, adv, mask, weights


def actor_config(overrides: list[str]):
    """veRL's real ActorConfig from its ppo_trainer.yaml, instantiated as its engine worker does."""
    from hydra import compose, initialize_config_dir  # noqa: PLC0415
    from verl.utils.config import omega_conf_to_dataclass  # noqa: PLC0415

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                                                            *overrides])
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def call(fn, lp, old, adv, mask, mode, config, weights):
    """As veRL's actor calls a policy loss (verl/workers/utils/losses.py): all seven by keyword."""
    lp = lp.detach().clone().requires_grad_()
    loss, metrics = fn(old_log_prob=old, log_prob=lp, advantages=adv, response_mask=mask, loss_agg_mode=mode,
                       config=config, rollout_is_weights=weights)
    loss.backward()
    return loss.detach(), lp.grad, metrics


def main() -> int:
    print(f"veRL {verl.__version__}, torch {torch.__version__}, tensordict {importlib.metadata.version('tensordict')}, "
          f"transformers {importlib.metadata.version('transformers')}, python {sys.version.split()[0]}")

    # 1. discovery through the entry point, before anything imports symrl
    eps = [ep for ep in importlib.metadata.entry_points(group="verl.plugins") if ep.value.startswith("symrl")]
    check("symrl declares a verl.plugins entry point", len(eps) == 1, f"{[f'{e.name} = {e.value}' for e in eps]}")
    loaded = "symrl.integrations.verl" in sys.modules
    fn = core_algos.get_policy_loss_fn("symmetric_ppo")
    import symrl.integrations.verl as plugin  # noqa: PLC0415

    check("import verl loaded symrl.integrations.verl (no import symrl in the script)", loaded)
    check('get_policy_loss_fn("symmetric_ppo") is symrl\'s loss', fn is plugin.symmetric_ppo_policy_loss,
          f"{fn.__module__}.{fn.__name__}")
    params = list(inspect.signature(fn).parameters)
    vanilla_params = list(inspect.signature(core_algos.compute_policy_loss_vanilla).parameters)
    check("symrl's loss takes veRL's 7 arguments (as vanilla names them)", params == vanilla_params, f"{params}")

    # 2. configuration through veRL's own Hydra config
    overrides = ["actor_rollout_ref.actor.policy_loss._target_=symrl.integrations.verl.SymmetricPolicyLossConfig",
                 "actor_rollout_ref.actor.policy_loss.loss_mode=symmetric_ppo",
                 "+actor_rollout_ref.actor.policy_loss.symmetric_alpha=0.5",
                 "+actor_rollout_ref.actor.policy_loss.symmetric_beta=0.4",
                 "+actor_rollout_ref.actor.policy_loss.symmetric_z=-1.0"]
    sym_cfg = actor_config(overrides)
    pl = sym_cfg.policy_loss
    check("veRL's ActorConfig instantiates SymmetricPolicyLossConfig from the documented overrides",
          isinstance(pl, plugin.SymmetricPolicyLossConfig) and (pl.symmetric_alpha, pl.symmetric_beta, pl.symmetric_z)
          == (0.5, 0.4, -1.0) and pl.loss_mode == "symmetric_ppo",
          f"{type(pl).__name__}(loss_mode={pl.loss_mode}, alpha={pl.symmetric_alpha}, beta={pl.symmetric_beta})")
    try:
        actor_config(["+actor_rollout_ref.actor.policy_loss.symmetric_alpha=0.5"])
        print("note  veRL's own PolicyLossConfig now accepts unknown keys: the _target_ override is no longer needed")
    except Exception as error:  # noqa: BLE001
        print(f"note  without the _target_ override veRL rejects the keys: {str(error).splitlines()[0][:140]}")
    configs = {  # the actor configs the loss is called with, all built by veRL from its yaml
        "authors' mask": sym_cfg,
        "unmasked": actor_config([*overrides, "+actor_rollout_ref.actor.policy_loss.symmetric_reverse_mask=none"]),
        "alpha=1 beta=0": actor_config([overrides[0], "+actor_rollout_ref.actor.policy_loss.symmetric_alpha=1.0",
                                        "+actor_rollout_ref.actor.policy_loss.symmetric_beta=0.0"]),
        "vanilla": actor_config([]),  # veRL's defaults: clip_ratio 0.2, clip_ratio_c 3 (the dual clip)
    }

    modes = agg_modes()
    check("loss_agg_modes read from veRL's agg_loss include the three SPEC §5.1 names",
          {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean"} <= set(modes), f"{modes}")

    global DTYPE
    c_total = 0.5 + 0.4 * 1.0
    for DTYPE in (torch.float64, torch.float32):
        lp, old, adv, mask, weights = tensors(DTYPE)
        r = (lp - old).exp()
        n_dual = int(((adv < 0) & (r > 3.0) & mask).sum())
        n_clipped = int(((r < 0.8) | (r > 1.2)).logical_and(mask).sum())
        dname = str(DTYPE).removeprefix("torch.")
        print(f"-- {dname}: {int(mask.sum())} response tokens of {mask.numel()}, {n_clipped} outside the clip range, "
              f"{n_dual} under the dual clip")
        gbi_cases = {"this micro-batch": {},
                     "rank 0 of 2": {"dp_size": 2, "batch_num_tokens": 2 * int(mask.sum()) + 3,
                                     "global_batch_size": 11, "loss_scale_factor": 7}}
        for mode in modes:
            for gname, gbi in gbi_cases.items():
                for w_name, w in (("", None), (", IS weights", weights)):
                    for cfg in configs.values():  # what veRL's actor does before each call
                        cfg.global_batch_info.clear()
                        cfg.global_batch_info.update(gbi)
                    tag = f"[{dname}, {mode}, {gname}{w_name}]"
                    # 3. value and gradient vs the transcription, aggregated by veRL's agg_loss
                    for variant in ("authors' mask", "unmasked"):
                        loss, grad, metrics = call(fn, lp, old, adv, mask, mode, configs[variant], w)
                        ref_lp = lp.detach().clone().requires_grad_()
                        mat = spec_token_loss(ref_lp, old, adv, eps=0.2, alpha=0.5, beta=0.4, z=-1.0, c=3.0,
                                              authors_mask=variant == "authors' mask")
                        mat = mat if w is None else mat * w
                        ref = core_algos.agg_loss(loss_mat=mat, loss_mask=mask, loss_agg_mode=mode, **gbi)
                        ref.backward()
                        ok_v, d_v = close(loss, ref.detach())
                        ok_g, d_g = close(grad, ref_lp.grad)
                        check(f"SPEC transcription, {variant} {tag}: value, gradient", ok_v and ok_g, f"{d_v}, {d_g}")
                    # 4. alpha = 1, beta = 0 is veRL's vanilla
                    v_loss, v_grad, v_metrics = call(core_algos.compute_policy_loss_vanilla, lp, old, adv, mask, mode,
                                                     configs["vanilla"], w)
                    s_loss, s_grad, s_metrics = call(fn, lp, old, adv, mask, mode, configs["alpha=1 beta=0"], w)
                    ok_v, d_v = close(s_loss, v_loss)
                    ok_g, d_g = close(s_grad, v_grad)
                    ok_m = all(abs(s_metrics[k] - v_metrics[k]) <= 1e-6 for k in v_metrics)
                    check(f"alpha=1 beta=0 == veRL vanilla {tag}: value, gradient, metrics", ok_v and ok_g and ok_m,
                          f"{d_v}, {d_g}, metrics {'equal' if ok_m else f'{s_metrics} vs {v_metrics}'}")
                    # 5. SPEC §1.1: with the authors' mask, the gradient is (alpha + beta |z|) times vanilla's
                    _, sym_grad, _ = call(fn, lp, old, adv, mask, mode, configs["authors' mask"], w)
                    ok_s, d_s = close(sym_grad, c_total * v_grad)
                    check(f"SPEC §1.1: gradient == {c_total:g} x vanilla's {tag}", ok_s, d_s)
    DTYPE = torch.float64

    # a control: the reverse term without its mask is not a rescaling, so the §1.1 comparison can fail
    lp, old, adv, mask, _ = tensors(torch.float64)
    for cfg in configs.values():
        cfg.global_batch_info.clear()
    _, unmasked_grad, _ = call(fn, lp, old, adv, mask, "token-mean", configs["unmasked"], None)
    _, v_grad, _ = call(core_algos.compute_policy_loss_vanilla, lp, old, adv, mask, "token-mean", configs["vanilla"], None)
    check("control: the unmasked reverse term is NOT a rescaling of vanilla", not close(unmasked_grad, c_total * v_grad)[0])

    # 6. bad input
    def raises(name, fn_, pattern):
        try:
            fn_()
        except Exception as error:  # noqa: BLE001
            check(name, re.search(pattern, str(error)) is not None, f"{type(error).__name__}: {str(error)[:150]}")
        else:
            check(name, False, "no error raised")

    asym = actor_config(["actor_rollout_ref.actor.clip_ratio_high=0.28"])
    raises("asymmetric clip range -> clear error", lambda: call(fn, lp, old, adv, mask, "token-mean", asym, None),
           "clip_ratio_low = clip_ratio_high")
    raises("unknown loss_agg_mode -> veRL's error", lambda: call(fn, lp, old, adv, mask, "seq-median", sym_cfg, None),
           "seq-median")
    raises("unsupported veRL version -> error naming the supported range",
           lambda: plugin.check_verl_version("0.10.0"), r">=0\.9,<0\.10.*0\.10\.0")
    raises("unsupported veRL version registered -> the loss raises when called",
           lambda: plugin._unsupported("0.8.5")(old, lp, adv, mask), r">=0\.9,<0\.10.*0\.8\.5")
    try:
        plugin.check_verl_version(verl.__version__)
        check(f"the installed veRL {verl.__version__} is in the supported range", True)
    except Exception as error:  # noqa: BLE001
        check(f"the installed veRL {verl.__version__} is in the supported range", False, str(error))

    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


DTYPE = torch.float64

if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - a crash is a failed check
        traceback.print_exc()
        sys.exit(1)
