"""A NumPy mirror of an MLP :class:`~symrl.policies.ActorCritic`, sharing its memory.

Why: PPO on MuJoCo with the paper's settings is 2,048 single-observation forward passes and 320
minibatch updates of two 64x64 MLPs per rollout. At that size each PyTorch operator and each autograd
node costs more than its arithmetic, so the Python/PyTorch overhead, not the maths, sets the speed.
NumPy's per-call cost is several times lower, and the backward pass of an MLP is a handful of matrix
products, written out here.

The arrays are *views* of the torch parameters (``tensor.numpy()`` shares memory), so an update made
here is the torch module's update: checkpoints, ``model.pt`` and evaluation see it without copying.
The gradients land in one flat buffer laid out like the flat parameter vector (see
:func:`flatten_parameters`), so clipping and the optimiser are a few vector operations. With sparse
observations (MinAtar's binary grids) the first layer multiplies only the input columns that are non-zero somewhere
in the rollout (training) or in the step's observations (acting) (:func:`_active_inputs`): the same result up to
rounding with a fraction of the arithmetic.

Supported: MLP bodies (tanh or relu, any depth, shared or separate actor and critic), Gaussian heads with
a state-independent log-std, and categorical heads over one or several equal-sized dimensions (Discrete,
and MultiDiscrete with equal bins, which covers discretised Box actions). Anything else uses the torch
path; :func:`supports` says which.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..policies import ActorCritic

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def supports(policy: ActorCritic) -> Optional[str]:
    """``None`` when the NumPy engine can run ``policy``, else the reason it cannot."""
    if policy.cnn:
        return "the policy uses a CNN"
    if policy.device.type != "cpu":
        return f"the policy lives on {policy.device}"
    if policy.kind == "multidiscrete" and not policy.equal_bins:
        return "MultiDiscrete dimensions have different sizes"
    for body in (policy.actor_body, policy.critic_body):
        for layer in body.net:
            if not isinstance(layer, (nn.Linear, nn.Tanh, nn.ReLU)):
                return f"the MLP holds a {type(layer).__name__} layer"
    if any(p.dtype != torch.float32 for p in policy.parameters()):
        return "the parameters are not float32"
    return None


def flatten_parameters(module: nn.Module) -> torch.Tensor:
    """Move every parameter of ``module`` into one contiguous float32 vector and make each parameter a
    view of it (order of ``module.parameters()``). Returns the vector; values are unchanged."""
    params = list(module.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset : offset + n].view_as(p)
        offset += n
    return flat


def is_flat(params: list[torch.Tensor], flat: torch.Tensor) -> bool:
    """Whether ``params`` are still views of ``flat`` (``module.to(...)`` or assigning ``p.data`` breaks that)."""
    ptr = flat.untyped_storage().data_ptr()
    return all(p.untyped_storage().data_ptr() == ptr for p in params)


class NumpyActorCritic:
    """Forward (acting and training) and backward passes of an MLP actor-critic, in NumPy."""

    def __init__(self, policy: ActorCritic, flat: torch.Tensor, shared_grad: bool = False):
        """``policy`` must pass :func:`supports` and have its parameters flattened into ``flat``; ``shared_grad``: the
        gradient buffer in shared memory (for :class:`~symrl.fast.critic.CriticWorker`)."""
        self.kind = policy.kind
        self.shared = policy.shared
        self.relu = any(isinstance(m, nn.ReLU) for m in policy.actor_body.net)
        self.grad = (torch.zeros(flat.numel()).share_memory_().numpy() if shared_grad
                     else np.zeros(flat.numel(), np.float32))
        base = flat.untyped_storage().data_ptr()
        grads = {}
        for p in policy.parameters():  # a gradient view at each parameter's offset in the flat vector
            start = (p.untyped_storage().data_ptr() - base) // 4 + p.storage_offset()
            grads[id(p)] = self.grad[start : start + p.numel()].reshape(p.shape)

        def pairs(layers) -> list:
            return [(m.weight.detach().numpy(), m.bias.detach().numpy(), grads[id(m.weight)], grads[id(m.bias)])
                    for m in layers if isinstance(m, nn.Linear)]

        self.actor = pairs(policy.actor_body.net)
        self.critic = self.actor if self.shared else pairs(policy.critic_body.net)
        self.head = pairs([policy.action_head])[0]
        self.vhead = pairs([policy.value_head])[0]
        if self.kind == "continuous":
            self.log_std = policy.log_std.detach().numpy()
            self.log_std_grad = grads[id(policy.log_std)]
            self.dims, self.bins = policy.action_dim, 0
        else:
            self.dims = 1 if self.kind == "discrete" else len(policy.nvec)
            self.bins = policy.n_logits // self.dims

    # -- forward -----------------------------------------------------------------------------------------
    def _body(self, layers: list, x: np.ndarray, keep: Optional[list], cols: Optional[np.ndarray] = None) -> np.ndarray:
        """The hidden layers on ``x``; ``cols``: ``x`` holds only these input columns (the others are all zero)."""
        for i, (weight, bias, _, _) in enumerate(layers):
            x = x @ (weight[:, cols] if i == 0 and cols is not None else weight).T
            x += bias
            if self.relu:
                np.maximum(x, 0.0, out=x)
            else:
                np.tanh(x, out=x)
            if keep is not None:
                keep.append(x)
        return x

    def _policy_out(self, features: np.ndarray) -> np.ndarray:
        """The policy head's output (logits or means) on the actor's last hidden layer."""
        w, b, _, _ = self.head
        out = features @ w.T
        out += b
        return out

    def _value_out(self, features: np.ndarray) -> np.ndarray:
        """The value head on the critic's last hidden layer, ``[B]``."""
        vw, vb, _, _ = self.vhead
        value = features @ vw[0]
        value += vb[0]
        return value

    def _log_softmax(self, out: np.ndarray) -> np.ndarray:
        logits = out.reshape(out.shape[0], self.dims, self.bins)
        shifted = logits - _reduce_last(np.maximum, logits)[..., None]
        return shifted - np.log(_reduce_last(np.add, np.exp(shifted)))[..., None]

    def fuse(self) -> None:
        """Build the acting network: actor and critic side by side in one chain of matrices (stacked first
        layer, block-diagonal deeper layers and heads), so acting is one matrix product per layer. The
        parameters are constant during a rollout, so this runs once per rollout; call it after every
        parameter change before :meth:`act`."""
        if self.shared:
            layers = [(w, b) for w, b, _, _ in self.actor]
            head = np.concatenate([self.head[0], self.vhead[0]]), np.concatenate([self.head[1], self.vhead[1]])
        else:
            layers = []
            for i, ((wa, ba, _, _), (wc, bc, _, _)) in enumerate(zip(self.actor, self.critic, strict=True)):
                w = np.concatenate([wa, wc]) if i == 0 else _block_diag(wa, wc)
                layers.append((w, np.concatenate([ba, bc])))
            head = _block_diag(self.head[0], self.vhead[0]), np.concatenate([self.head[1], self.vhead[1]])
        self._acting = [(np.ascontiguousarray(w.T), b) for w, b in layers]
        self._acting_head = (np.ascontiguousarray(head[0].T), head[1])
        if self.kind == "continuous":
            self._std = np.exp(self.log_std)
            self._lp_const = float(-(self.log_std.sum() + self.dims * LOG_SQRT_2PI))

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False):
        """``(actions, log_prob, value)`` for a batch of normalised observations ``[N, obs_dim]``, with the
        parameters as of the last :meth:`fuse`.

        log_prob is ``[N]`` (joint), or ``[N, D]`` per dimension for MultiDiscrete policies."""
        x, cols = _active_inputs(obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False))
        for i, (w_t, b) in enumerate(self._acting):
            x = x @ (w_t[cols] if i == 0 and cols is not None else w_t)
            x += b
            if self.relu:
                np.maximum(x, 0.0, out=x)
            else:
                np.tanh(x, out=x)
        w_t, b = self._acting_head
        out = x @ w_t
        out += b
        value = out[:, -1]
        out = out[:, :-1]
        if self.kind == "continuous":
            if deterministic:
                return out, np.full(out.shape[0], self._lp_const, np.float32), value
            noise = rng.standard_normal(out.shape, dtype=np.float32)
            actions = noise * self._std
            actions += out
            return actions, self._lp_const - 0.5 * (noise * noise).sum(-1), value
        logp = self._log_softmax(np.ascontiguousarray(out))
        if deterministic:
            actions = logp.argmax(-1)
        else:  # inverse-CDF sampling, one uniform per dimension
            cdf = _cumsum_last(np.exp(logp))
            u = rng.random((*cdf.shape[:2], 1), dtype=np.float32) * cdf[..., -1:]
            actions = np.minimum(_reduce_last(np.add, (cdf < u).astype(np.int64)), self.bins - 1)
        lp = _at_last(logp, actions)
        if self.kind == "discrete":
            return actions[:, 0], lp[:, 0], value
        return actions, lp, value

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self._value_out(self._body(self.critic, obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False), None))

    # -- training: forward, losses, backward ------------------------------------------------------------------------
    @staticmethod
    def training_inputs(obs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """A rollout's observations as the first layer takes them, once for all its minibatches: ``(inputs, cols)``,
        flattened float32 rows holding only the columns ``cols`` that are non-zero somewhere in the rollout, or all
        columns (``cols`` None; see :func:`_active_inputs`). A minibatch is ``(inputs[rows], cols)``: choosing the
        columns once costs a few more of them than choosing per minibatch (Breakout: 140 of 400 against about 125)
        and spares gathering whole rows and scanning them for every minibatch."""
        return _active_inputs(obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False))

    def train_passes(self, inputs: np.ndarray, cols: Optional[np.ndarray], actions: np.ndarray, policy_loss: Callable,
                     value_loss: Callable, critic=None):
        """One minibatch's forward pass, losses and backward pass (``inputs``, ``cols``: its rows of
        :meth:`training_inputs`); the gradient lands in :attr:`grad`. ``critic``: a separate critic's passes already
        started elsewhere (:meth:`symrl.fast.critic.CriticWorker.start`); its ``result()`` is the value loss's.

        ``policy_loss(log_prob, entropy) -> (result, d_log_prob, d_entropy)`` and ``value_loss(values) -> (result,
        d_values)`` are the losses with their gradients with respect to the outputs (log_prob ``[B]`` or ``[B, D]`` as
        ActorCritic.evaluate returns it, or ``[B]`` for the joint log-probability of a factorised policy; entropy
        and values ``[B]``). Returns their two results."""
        hidden = [inputs]
        features = self._body(self.actor, inputs, hidden, cols)
        log_prob, entropy, head = self._distribution(self._policy_out(features), actions)
        policy, d_log_prob, d_entropy = policy_loss(log_prob, entropy)
        top = self._linear_backward(self.head, hidden[-1], self._distribution_backward(head, d_log_prob, d_entropy))
        if self.shared:  # one body: the value head's gradient joins the policy head's on its way down
            critic_result, d_values = value_loss(self._value_out(features))
            top += self._linear_backward(self.vhead, hidden[-1], d_values[:, None])
        self._body_backward(self.actor, hidden, top, cols)
        if self.shared:
            return policy, critic_result
        # the critic's gradients are its own part of the buffer: computing them before, after or beside the actor's
        # changes no number
        return policy, critic.result() if critic is not None else self._critic_passes(inputs, cols, value_loss)

    def _critic_passes(self, inputs: np.ndarray, cols: Optional[np.ndarray], value_loss: Callable):
        """A separate critic's forward pass, loss and backward pass; the loss's result."""
        hidden = [inputs]
        result, d_values = value_loss(self._value_out(self._body(self.critic, inputs, hidden, cols)))
        top = self._linear_backward(self.vhead, hidden[-1], d_values[:, None])
        self._body_backward(self.critic, hidden, top, cols)
        return result

    def _distribution(self, out: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(log_prob, entropy, what the backward pass needs)`` of the policy head's output ``out``."""
        if self.kind == "continuous":
            z = (actions - out) * np.exp(-self.log_std)
            log_prob = (-0.5 * z * z - self.log_std - LOG_SQRT_2PI).sum(-1)
            entropy = np.full(out.shape[0], (0.5 + LOG_SQRT_2PI + self.log_std).sum(), np.float32)
            return log_prob, entropy, {"z": z}
        logp = self._log_softmax(out)
        idx = actions.reshape(out.shape[0], self.dims).astype(np.int64, copy=False)
        lp = _at_last(logp, idx)
        probs = np.exp(logp)
        ent_dim = -_reduce_last(np.add, probs * logp)
        log_prob = lp[:, 0] if self.kind == "discrete" else lp
        return log_prob, ent_dim.sum(-1), {"logp": logp, "probs": probs, "idx": idx, "ent_dim": ent_dim}

    def _distribution_backward(self, head: dict, d_log_prob: np.ndarray, d_entropy: np.ndarray) -> np.ndarray:
        """The gradient with respect to the policy head's output (the log-std's own gradient is written here)."""
        if self.kind == "continuous":
            inv_std = np.exp(-self.log_std)
            self.log_std_grad[...] = (d_log_prob[:, None] * (head["z"] * head["z"] - 1.0)).sum(0) + d_entropy.sum()
            return (d_log_prob[:, None] * head["z"]) * inv_std
        g = d_log_prob.reshape(d_log_prob.shape[0], -1, 1)  # [B, 1 or D, 1]
        probs, logp = head["probs"], head["logp"]
        d_logits = -g * probs
        _at_last(d_logits, head["idx"], add=g[..., 0])
        # dH/dlogit_k = -p_k (log p_k + H) per dimension
        d_logits -= d_entropy[:, None, None] * probs * (logp + head["ent_dim"][..., None])
        return d_logits.reshape(d_logits.shape[0], -1)

    @staticmethod
    def _linear_backward(layer: tuple, inputs: np.ndarray, d_out: np.ndarray, input_grad: bool = True,
                         cols: Optional[np.ndarray] = None):
        """Write the layer's weight and bias gradients; return the gradient of its input (if wanted). ``cols``: the
        inputs hold only these columns of the layer's input (the others are all zero: so are their weights' gradients)."""
        weight, _, grad_w, grad_b = layer
        if cols is None:
            np.dot(d_out.T, inputs, out=grad_w)
        else:
            grad_w.fill(0.0)
            grad_w[:, cols] = d_out.T @ inputs
        np.sum(d_out, 0, out=grad_b)
        if not input_grad:
            return None
        # one output (the value head): the same products as the matrix product, which BLAS does slowly at this shape
        return d_out * weight if d_out.shape[1] == 1 else d_out @ weight

    def _body_backward(self, layers: list, hidden: list, d_top: np.ndarray, cols: Optional[np.ndarray]) -> None:
        d = d_top
        for i in range(len(layers) - 1, -1, -1):  # the observations (layer 0's input) need no gradient
            h = hidden[i + 1]
            d = d * (h > 0) if self.relu else d * (1.0 - h * h)
            d = self._linear_backward(layers[i], hidden[i], d, input_grad=i > 0, cols=None if i else cols)


def _active_inputs(x: np.ndarray, min_columns: int = 64) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x, None)``, or ``(x[:, cols], cols)`` when ``x`` has ``min_columns`` columns or more and at most 3/4 of them
    are non-zero somewhere in the batch (sparse observations: MinAtar's binary grids). The first layer then multiplies
    only those columns: its output and its weights' gradients are the same up to rounding, its arithmetic smaller
    (Breakout: about 140 of 400 columns in a rollout, 60 in one step's 64 observations)."""
    if x.shape[1] < min_columns:  # nothing worth saving
        return x, None
    active = x.any(0)
    if np.count_nonzero(active) > 0.75 * active.size:
        return x, None
    cols = np.flatnonzero(active)
    return np.take(x, cols, axis=1), cols  # C-ordered (x[:, cols] is F-ordered: slow to gather rows from)


SHORT_AXIS = 8  # NumPy's own sum over a last axis this short adds in order, as the unrolled chain below does


def _at_last(x: np.ndarray, index: np.ndarray, add: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """``x[b, d, index[b, d]]`` for ``x`` ``[B, D, K]`` and ``index`` ``[B, D]`` (``np.take_along_axis`` on the last axis,
    by one flat index: about 25 us less a call); with ``add`` (broadcast to ``index``'s shape), adds it there in place
    instead (``x`` must then be contiguous)."""
    flat = x.reshape(-1, x.shape[-1])
    where = (np.arange(flat.shape[0]), index.reshape(-1))
    if add is None:
        return flat[where].reshape(index.shape)
    assert np.shares_memory(flat, x), "adding in place needs a contiguous array"
    flat[where] += np.broadcast_to(add, index.shape).reshape(-1)
    return None


def _reduce_last(ufunc: np.ufunc, x: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(x, axis=-1)``. A categorical head's last axis (its bins) is short, and NumPy reduces over a
    short inner axis slowly (max over 1024 x 3: 43 us); the unrolled chain of element-wise calls on its columns
    takes 2 us and, below :data:`SHORT_AXIS`, gives the same values in the same order."""
    if x.shape[-1] >= SHORT_AXIS:
        return ufunc.reduce(x, axis=-1)
    out = x[..., 0].copy()
    for k in range(1, x.shape[-1]):
        ufunc(out, x[..., k], out=out)
    return out


def _cumsum_last(x: np.ndarray) -> np.ndarray:
    """``x.cumsum(-1)``, unrolled for a short last axis (see :func:`_reduce_last`)."""
    if x.shape[-1] >= SHORT_AXIS:
        return x.cumsum(-1)
    out = x.copy()
    for k in range(1, x.shape[-1]):
        np.add(out[..., k - 1], x[..., k], out=out[..., k])
    return out


def _block_diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]), a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, a.shape[1] :] = b
    return out
