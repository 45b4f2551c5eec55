"""symrl.integrations.torchrl: the loss modules' gradients are symrl.losses's, and SPPO learns CartPole."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchrl")

from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule  # noqa: E402
from torch import nn  # noqa: E402
from torchrl.modules import ProbabilisticActor, ValueOperator  # noqa: E402
from torchrl.objectives import ClipPPOLoss  # noqa: E402

from symrl.integrations.torchrl import SymmetricA2CLoss, SymmetricClipPPOLoss  # noqa: E402
from symrl.losses import symmetric_a2c_loss, symmetric_ppo_loss  # noqa: E402

N, OBS, ACTIONS = 96, 5, 4
ALPHA, BETA, Z, EPS = 0.5, 2.0, -1.5, 0.2


def _modules(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, ACTIONS))
    actor = ProbabilisticActor(TensorDictModule(net, ["observation"], ["logits"]), in_keys=["logits"],
                               distribution_class=torch.distributions.Categorical, return_log_prob=True)
    critic = ValueOperator(nn.Linear(OBS, 1), in_keys=["observation"])
    return net, actor, critic


def _batch(net: nn.Module, with_mask: bool = False) -> TensorDict:
    """Synthetic data whose old policy differs from the current one, so the ratio is clipped somewhere."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(N, OBS, generator=g)
    action = torch.randint(0, ACTIONS, (N,), generator=g)
    with torch.no_grad():
        old = torch.distributions.Categorical(logits=net(obs)).log_prob(action) + 0.4 * torch.randn(N, generator=g)
    data = {"observation": obs, "action": action, "action_log_prob": old,
            "advantage": torch.randn(N, 1, generator=g), "value_target": torch.randn(N, 1, generator=g)}
    if with_mask:
        data["mask"] = torch.rand(N, generator=g) > 0.25
    return TensorDict(data, batch_size=[N])


def _policy_grads(loss: torch.Tensor, net: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(net.parameters())))


def _current_log_prob(net: nn.Module, td: TensorDict) -> torch.Tensor:
    return torch.distributions.Categorical(logits=net(td["observation"])).log_prob(td["action"])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("reverse_mask", ["ppo", "none"])
def test_ppo_module_gradients_equal_symrl_losses(normalize, reverse_mask):
    net, actor, critic = _modules()
    td = _batch(net)
    module = SymmetricClipPPOLoss(actor, critic, alpha=ALPHA, beta=BETA, z=Z, reverse_mask=reverse_mask,
                                  clip_epsilon=EPS, entropy_bonus=False, normalize_advantage=normalize)
    out = module(td)
    assert {"loss_objective", "loss_reverse", "loss_critic", "active_fraction"} <= set(out.keys())

    advantage = td["advantage"].squeeze(-1)
    if normalize:  # TorchRL's standardisation: unbiased std, floored at float32 resolution
        advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(torch.finfo(torch.float).resolution)
    expected = symmetric_ppo_loss(_current_log_prob(net, td), td["action_log_prob"], advantage, clip_range=EPS,
                                  alpha=ALPHA, beta=BETA, z=Z, reverse_mask=reverse_mask)
    assert expected.clip_fraction > 0  # the clipped branch and the mask are exercised
    torch.testing.assert_close(out["loss_objective"] + out["loss_reverse"], expected.loss)
    torch.testing.assert_close(out["loss_reverse"], BETA * expected.reverse_loss)
    for ours, theirs in zip(_policy_grads(out["loss_objective"] + out["loss_reverse"], net),
                            _policy_grads(expected.loss, net), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_ppo_module_is_scaled_clip_ppo_where_the_mask_is_active():
    """SPEC 1.1: with the authors' mask the symmetric gradient is ClipPPOLoss's times alpha + beta |z|."""
    net, actor, critic = _modules()
    td = _batch(net)
    ours = SymmetricClipPPOLoss(actor, critic, alpha=ALPHA, beta=BETA, z=Z, clip_epsilon=EPS, entropy_bonus=False)(td)
    plain = ClipPPOLoss(actor, critic, clip_epsilon=EPS, entropy_bonus=False)(td)
    for a, b in zip(_policy_grads(ours["loss_objective"] + ours["loss_reverse"], net),
                    _policy_grads(plain["loss_objective"], net), strict=True):
        torch.testing.assert_close(a, (ALPHA + BETA * abs(Z)) * b, rtol=1e-5, atol=1e-7)


def test_ppo_module_respects_the_loss_mask():
    net, actor, critic = _modules()
    td = _batch(net, with_mask=True)
    module = SymmetricClipPPOLoss(actor, critic, alpha=ALPHA, beta=BETA, z=Z, clip_epsilon=EPS, entropy_bonus=False)
    module.loss_mask_key = "mask"  # TorchRL drops masked samples from every loss_* mean
    out = module(td)
    expected = symmetric_ppo_loss(_current_log_prob(net, td), td["action_log_prob"], td["advantage"].squeeze(-1),
                                  clip_range=EPS, alpha=ALPHA, beta=BETA, z=Z, mask=td["mask"])
    torch.testing.assert_close(out["loss_objective"] + out["loss_reverse"], expected.loss)


def test_a2c_module_gradients_equal_symrl_losses():
    net, actor, critic = _modules()
    td = _batch(net)
    module = SymmetricA2CLoss(actor, critic, alpha=ALPHA, beta=BETA, z=Z, entropy_bonus=False)
    out = module(td)
    expected = symmetric_a2c_loss(_current_log_prob(net, td), td["advantage"].squeeze(-1), alpha=ALPHA, beta=BETA, z=Z)
    torch.testing.assert_close(out["loss_objective"] + out["loss_reverse"], expected.loss)
    for ours, theirs in zip(_policy_grads(out["loss_objective"] + out["loss_reverse"], net),
                            _policy_grads(expected.loss, net), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    # SPEC 1.1: the reverse A2C gradient is |z| p times A2C's, per sample
    p = _current_log_prob(net, td).exp().detach()
    weighted = -(td["advantage"].squeeze(-1) * abs(Z) * p * _current_log_prob(net, td)).mean()
    reverse = module(td)["loss_reverse"]
    for ours, theirs in zip(_policy_grads(reverse, net), _policy_grads(BETA * weighted, net), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_bad_settings_are_rejected():
    _, actor, critic = _modules()
    with pytest.raises(ValueError, match="negative"):
        SymmetricClipPPOLoss(actor, critic, z=0.5)
    with pytest.raises(ValueError, match="clip_epsilon"):
        SymmetricClipPPOLoss(actor, critic, clip_epsilon=(0.2, 0.3))
    with pytest.raises(ValueError, match="reduction"):
        SymmetricA2CLoss(actor, critic, reduction="sum")
    from torchrl.modules import NormalParamExtractor, TanhNormal

    gaussian = ProbabilisticActor(  # a continuous actor: its densities are no probabilities
        TensorDictModule(nn.Sequential(nn.Linear(OBS, 2), NormalParamExtractor()), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"], distribution_class=TanhNormal, return_log_prob=True)
    for module in (SymmetricClipPPOLoss, SymmetricA2CLoss):
        with pytest.raises(ValueError, match="needs a categorical actor .*got TanhNormal"):
            module(gaussian, critic)


@pytest.mark.slow  # a learning run; the loss modules' gradients are checked in the default suite
def test_torchrl_sppo_learns_cartpole():
    """The documented example: a plain TorchRL PPO loop whose only symrl part is the loss module."""
    path = Path(__file__).parents[1] / "examples" / "torchrl_sppo_cartpole.py"
    spec = importlib.util.spec_from_file_location("torchrl_sppo_cartpole", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    history = example.train(frames=61_440, seed=0)
    assert max(score for _, score in history) >= 475, history
