"""Adam and RMSprop on the flat parameter vector, in NumPy, bit-for-bit the update rules of
``torch.optim.Adam`` / ``torch.optim.RMSprop`` (no weight decay, no momentum, not centred, no amsgrad) and of
:class:`symrl.optimizers.RMSpropTFLike`.

The moment buffers are views stored *in the torch optimiser's own state*, so ``optimizer.state_dict()``
(checkpoints) and ``load_state_dict`` (resume) keep working, and a run can switch between this engine and
the torch one. Call :meth:`FlatOptimizer.sync` before reading the torch optimiser's state: it writes the
step counter back (the trainer does so before every checkpoint).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import TrainingDiverged
from ..optimizers import RMSpropTFLike


class FlatOptimizer:
    """One gradient step on the flat vector: global grad-norm clipping, then Adam or RMSprop."""

    def __init__(self, optimizer: torch.optim.Optimizer, flat: torch.Tensor, params: list[torch.nn.Parameter]):
        if len(optimizer.param_groups) != 1:
            raise ValueError("the NumPy engine needs an optimiser with one parameter group")
        group = optimizer.param_groups[0]
        self.kind = ("adam" if isinstance(optimizer, torch.optim.Adam) else
                     "rmsprop_tf" if isinstance(optimizer, RMSpropTFLike) else "rmsprop")
        if self.kind == "rmsprop" and (group["momentum"] or group["centered"]):
            raise ValueError("the NumPy engine implements RMSprop without momentum and not centred")
        if group.get("weight_decay") or group.get("amsgrad") or group.get("maximize"):
            raise ValueError("the NumPy engine implements neither weight decay, amsgrad nor maximize")
        self.optimizer, self.group, self.params = optimizer, group, params
        self.param = flat.numpy()
        names = ("exp_avg", "exp_avg_sq") if self.kind == "adam" else ("square_avg",)
        start = torch.ones_like if self.kind == "rmsprop_tf" else torch.zeros_like  # TF's average starts at 1
        self.buffers = {name: start(flat) for name in names}
        self.step_count = 0
        offset = 0
        for p in params:  # adopt existing state (after a resume), then make the state views of the flat buffers
            state = optimizer.state[p]
            n = p.numel()
            if "step" in state:
                self.step_count = int(state["step"])
            for name, buf in self.buffers.items():
                view = buf[offset : offset + n].view_as(p)
                if name in state:
                    view.copy_(state[name])
                state[name] = view
            offset += n
        self.state = {name: buf.numpy() for name, buf in self.buffers.items()}
        self._scratch = (np.empty_like(self.param), np.empty_like(self.param))
        self.sync()

    def step(self, grad: np.ndarray, max_grad_norm: float) -> float:
        """Clip ``grad`` in place to ``max_grad_norm`` (as ``clip_grad_norm_``), apply one update and
        return the norm before clipping."""
        norm = math.sqrt(float(np.dot(grad, grad)))
        if not math.isfinite(norm):
            raise TrainingDiverged(
                "the gradient became non-finite; training stopped and the last checkpoint (if one was written) is kept. "
                "Lower learning_rate or check the reward scale"
            )
        coef = max_grad_norm / (norm + 1e-6)
        if coef < 1.0:
            grad *= coef
        lr, eps = self.group["lr"], self.group["eps"]
        self.step_count += 1
        if self.kind == "adam":
            beta1, beta2 = self.group["betas"]
            m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
            tmp, denom = self._scratch  # the same operations as written out below, without new arrays each step
            m += np.multiply(np.subtract(grad, m, out=tmp), 1.0 - beta1, out=tmp)  # m += (grad - m) * (1 - beta1)
            v *= beta2
            v += np.multiply(np.multiply(grad, grad, out=tmp), 1.0 - beta2, out=tmp)  # v += grad * grad * (1 - beta2)
            bias1 = 1.0 - beta1**self.step_count
            bias2_sqrt = math.sqrt(1.0 - beta2**self.step_count)
            np.sqrt(v, out=denom)
            denom /= bias2_sqrt
            denom += eps
            self.param -= np.multiply(np.divide(m, denom, out=tmp), lr / bias1, out=tmp)  # (m / denom) * (lr / bias1)
        else:
            alpha = self.group["alpha"]
            s = self.state["square_avg"]
            s *= alpha
            s += grad * grad * (1.0 - alpha)
            if self.kind == "rmsprop_tf":  # eps inside the square root
                denom = np.sqrt(s + eps)
            else:
                denom = np.sqrt(s)
                denom += eps
            self.param -= (grad / denom) * lr
        return norm

    def sync(self) -> None:
        """Write the step counter into the torch optimiser's state (before a checkpoint)."""
        for p in self.params:
            self.optimizer.state[p]["step"] = torch.tensor(float(self.step_count))
