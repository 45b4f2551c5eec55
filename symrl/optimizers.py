"""RMSprop as TensorFlow computes it, the optimiser of the authors' Atari A2C/SA2C (SPEC section 4).

The authors train Atari A2C with Stable-Baselines3's ``RMSpropTFLike`` (rl-zoo3's ``a2c.yml``), which ports
TensorFlow 1's rule: the running average of squared gradients starts at 1, and eps goes inside the square
root. ``torch.optim.RMSprop`` starts the average at 0, so its first steps are about lr / sqrt(1 - alpha), ten
times larger per coordinate at alpha = 0.99; MuJoCo A2C uses that one (SB3's default).
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch


class RMSpropTFLike(torch.optim.Optimizer):
    """``v <- alpha v + (1 - alpha) g^2`` from ``v = 1``; ``p <- p - lr g / sqrt(v + eps)``."""

    def __init__(self, params: Iterable, lr: float, alpha: float = 0.99, eps: float = 1e-5):
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                square_avg = state["square_avg"]
                square_avg.mul_(group["alpha"]).addcmul_(p.grad, p.grad, value=1.0 - group["alpha"])
                p.addcdiv_(p.grad, square_avg.add(group["eps"]).sqrt_(), value=-group["lr"])
        return loss
