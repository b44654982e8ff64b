"""LAMB, algorithmically the same as NVIDIA apex's FusedLAMB (the MLPerf HPC reference's).

Per step, with g the gradients of all parameters of all groups:
  1. global norm clipping: if ||g||_2 > max_grad_norm, every g is divided by ||g|| / max_grad_norm;
  2. moments with gradient averaging: m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2;
  3. bias correction: m^ = m / (1 - b1^t),  v^ = v / (1 - b2^t);
  4. decoupled weight decay: u = m^ / (sqrt(v^) + eps) + wd * p;
  5. trust ratio: p -= lr * (||p|| / ||u||) * u  where wd != 0 and both norms are non-zero,
     else p -= lr * u.

Two implementations of the same arithmetic: one tensor at a time, or each operation over all
of a group's tensors at once (``torch._foreach_*``, apex's multi-tensor apply in spirit). The
second launches a few kernels per operation and group instead of about 15 per tensor (the full
model has 301 tensors). ``foreach=None`` follows ``torch.optim``'s convention: all at once when
every parameter is on a GPU, else one at a time. On the CPU the ``_foreach`` operations loop
over the same per-tensor kernels, so both give the same bits there (the tests check), but all
at once is 3-4x slower there (``benchmarks/lamb_step.py``). The trainer passes
``--lamb_foreach`` (``train/gpu_options.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LAMB(torch.optim.Optimizer):
    """Layer-wise adaptive moments (You et al. 2019) with apex FusedLAMB's defaults."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
        foreach: bool | None = None,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} "
                             f"weight_decay={weight_decay}")
        # in the groups, as torch.optim keeps it: Horovod's DistributedOptimizer rebuilds the
        # optimizer from its param_groups alone
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "max_grad_norm": max_grad_norm, "foreach": foreach}
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load moments, steps and hyperparameters; the implementation stays this run's
        (a checkpoint written with the other one resumes to the same values)."""
        foreach = [group.get("foreach") for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, choice in zip(self.param_groups, foreach, strict=True):
            group["foreach"] = choice

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one LAMB update to every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        if any(g.is_sparse for g in grads):
            raise RuntimeError("LAMB does not support sparse gradients")
        low = (torch.float16, torch.bfloat16)  # reduce half-precision gradients in fp32
        global_norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.float() if g.dtype in low else g) for g in grads]))
        for group in self.param_groups:
            max_norm = group["max_grad_norm"]
            clip = (global_norm / max_norm).clamp(min=1.0) if max_norm > 0 else \
                torch.ones_like(global_norm)
            group["step"] = group.get("step", 0) + 1
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            foreach = group.get("foreach")
            if foreach is None:
                foreach = all(p.device.type == "cuda" for p in params)
            if params:
                (_update_all if foreach else _update_each)(self, group, params, clip)
        return loss


def _bias_corrections(group: dict[str, Any]) -> tuple[float, float, float, float]:
    """beta1, beta2 and the bias corrections 1 - beta^t of ``group``'s current step."""
    beta1, beta2 = group["betas"]
    t = group["step"]
    return beta1, beta2, 1 - beta1 ** t, 1 - beta2 ** t


def _update_each(opt: LAMB, group: dict[str, Any], params: list[torch.Tensor],
                 clip: torch.Tensor) -> None:
    """Steps 2-5 for ``params`` of ``group``, one tensor at a time."""
    beta1, beta2, correction1, correction2 = _bias_corrections(group)
    for p in params:
        grad = p.grad / clip
        m, v = opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        update = (m / correction1) / ((v / correction2).sqrt_().add_(group["eps"]))
        if group["weight_decay"] != 0:
            update.add_(p, alpha=group["weight_decay"])
            p_norm = torch.linalg.vector_norm(p)
            u_norm = torch.linalg.vector_norm(update)
            ratio = torch.where((p_norm > 0) & (u_norm > 0), p_norm / u_norm,
                                torch.ones_like(p_norm))
            p.add_(update * ratio, alpha=-group["lr"])
        else:
            p.add_(update, alpha=-group["lr"])


def _update_all(opt: LAMB, group: dict[str, Any], params: list[torch.Tensor],
                clip: torch.Tensor) -> None:
    """Steps 2-5 for ``params`` of ``group``, each operation over all tensors at once: the
    same operations, in the same order, as :func:`_update_each` (in place where that one makes
    a new tensor it only reads once)."""
    beta1, beta2, correction1, correction2 = _bias_corrections(group)
    grads = torch._foreach_div([p.grad for p in params], clip)  # type: ignore[misc]
    ms = [opt.state[p]["exp_avg"] for p in params]
    vs = [opt.state[p]["exp_avg_sq"] for p in params]
    torch._foreach_mul_(ms, beta1)
    torch._foreach_add_(ms, grads, alpha=1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
    denominators = torch._foreach_div(vs, correction2)
    torch._foreach_sqrt_(denominators)
    torch._foreach_add_(denominators, group["eps"])
    updates = torch._foreach_div(ms, correction1)
    torch._foreach_div_(updates, denominators)
    if group["weight_decay"] != 0:
        torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        p_norms = torch.stack(torch._foreach_norm(params))
        u_norms = torch.stack(torch._foreach_norm(updates))
        ratios = torch.where((p_norms > 0) & (u_norms > 0), p_norms / u_norms,
                             torch.ones_like(p_norms))
        torch._foreach_mul_(updates, list(ratios.unbind()))
    torch._foreach_add_(params, updates, alpha=-group["lr"])
