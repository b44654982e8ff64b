"""Batch-norm whose training statistics are computed over a group of ranks.

``hvd.SyncBatchNorm`` and ``nn.SyncBatchNorm`` only accept GPU tensors; this layer goes through
the project's :class:`~deepcam_hvd.distributed.base.Backend`, so it runs on CPU and GPU alike.
Each rank normalises its local batch with the mean and variance of the whole group's batch, and
the backward pass reduces the two gradient statistics over the group as well, so input
gradients equal those of one ``nn.BatchNorm2d`` over the concatenated batch. Weight and bias
gradients stay local: the distributed optimizer combines them like every other parameter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from deepcam_hvd.distributed.base import Backend, Group

_REDUCE_DIMS = (0, 2, 3)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """View a (C,) tensor as (1, C, 1, 1) to broadcast over N, H, W."""
    return t.view(1, -1, 1, 1)


def group_batch_stats(
    x: torch.Tensor, backend: Backend, group: Group | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and biased variance per channel over the group's batch, and its element count.

    Each rank contributes its count, sum and sum of squares (from a numerically stable local
    mean/variance), reduced in float64 in a single allreduce.
    """
    channels = x.shape[1]
    count = x.numel() // channels if channels else 0
    if count > 0:
        # half-precision inputs (autocast) get their statistics in float32, as nn.BatchNorm2d does
        xs = x.detach().to(torch.promote_types(x.dtype, torch.float32))
        var, mean = torch.var_mean(xs, dim=_REDUCE_DIMS, correction=0)
    else:
        var = mean = torch.zeros(channels, dtype=x.dtype, device=x.device)
    mean64, var64 = mean.double(), var.double()
    packed = torch.cat(
        (
            torch.full((1,), float(count), dtype=torch.float64, device=x.device),
            mean64 * count,
            (var64 + mean64 * mean64) * count,
        )
    )
    total = backend.allreduce(packed, "sum", group)
    group_count = int(round(float(total[0])))
    if group_count <= 1:
        raise ValueError(
            f"group batch-norm needs more than 1 value per channel when training, "
            f"got {group_count} over the group"
        )
    group_mean = total[1 : 1 + channels] / group_count
    group_var = (total[1 + channels :] / group_count - group_mean * group_mean).clamp_(min=0.0)
    return group_mean, group_var, group_count


class _GroupBatchNormFunction(torch.autograd.Function):
    """Normalise with given group statistics; backward reduces gradient sums over the group."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        mean: torch.Tensor,
        invstd: torch.Tensor,
        count: int,
        backend: Backend,
        group: Group | None,
    ) -> torch.Tensor:
        scale = weight * invstd
        shift = bias - mean * scale
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.count = count  # type: ignore[attr-defined]
        ctx.backend = backend  # type: ignore[attr-defined]
        ctx.group = group  # type: ignore[attr-defined]
        return x * _per_channel(scale) + _per_channel(shift)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        xmu = x - _per_channel(mean)
        sum_dy = grad_out.sum(dim=_REDUCE_DIMS)
        sum_dy_xmu = (grad_out * xmu).sum(dim=_REDUCE_DIMS)

        grad_x = grad_w = grad_b = None
        if need_w:
            grad_w = sum_dy_xmu * invstd
        if need_b:
            grad_b = sum_dy
        if need_x:
            channels = sum_dy.numel()
            total = ctx.backend.allreduce(torch.cat((sum_dy, sum_dy_xmu)), "sum", ctx.group)
            mean_dy = total[:channels] / ctx.count
            mean_dy_xmu = total[channels:] / ctx.count
            grad_x = (
                grad_out - _per_channel(mean_dy) - xmu * _per_channel(invstd * invstd * mean_dy_xmu)
            ) * _per_channel(invstd * weight)
        return grad_x, grad_w, grad_b, None, None, None, None, None


class GroupBatchNorm2d(nn.BatchNorm2d):
    """Drop-in ``nn.BatchNorm2d`` (same arguments, parameters, buffers and state_dict keys)
    whose training-mode statistics cover every rank of ``group``.

    Running statistics are updated as ``nn.BatchNorm2d`` does, with the group's mean and its
    unbiased variance over the group's element count, so they stay equal on every rank of a
    group. Evaluation mode uses the running statistics and does not communicate.

    Every rank of the group must run the same forward and backward passes (each is a
    collective). The backend object is held by reference and is not part of the state.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        backend: Backend,
        group: Group | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.backend = backend
        self.group = group

    def extra_repr(self) -> str:
        """Describe the layer, including the group it reduces over."""
        ranks = "all" if self.group is None else list(self.group.ranks)
        return f"{super().extra_repr()}, group={ranks}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W) with group statistics (training) or running ones."""
        self._check_input_dim(x)
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )

        mean64, var64, count = group_batch_stats(x, self.backend, self.group)

        if self.training and self.track_running_stats and self.running_mean is not None:
            factor = 0.0 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var64 * (count / (count - 1))
                self.running_mean.mul_(1.0 - factor).add_(
                    mean64.to(self.running_mean.dtype), alpha=factor
                )
                self.running_var.mul_(1.0 - factor).add_(
                    unbiased.to(self.running_var.dtype), alpha=factor
                )

        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        mean = mean64.to(compute_dtype)
        invstd = torch.rsqrt(var64 + self.eps).to(compute_dtype)
        if self.weight is not None and self.bias is not None:
            weight, bias = self.weight, self.bias
        else:
            weight = torch.ones(self.num_features, dtype=compute_dtype, device=x.device)
            bias = torch.zeros(self.num_features, dtype=compute_dtype, device=x.device)
        out = _GroupBatchNormFunction.apply(
            x, weight, bias, mean, invstd, count, self.backend, self.group
        )
        return out.to(x.dtype)


def convert_batchnorm(model: nn.Module, backend: Backend, group: Group | None = None) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``model`` by a :class:`GroupBatchNorm2d`.

    The new layers take over the old ones' parameter and buffer tensors themselves (not
    copies), so values, devices, ``requires_grad`` and any optimizer already holding the
    parameters carry over; state_dict keys are unchanged. Layers that already are
    ``GroupBatchNorm2d`` are re-bound to ``backend`` and ``group``. Returns ``model`` (or the
    replacement, when ``model`` itself is a batch-norm layer).
    """
    memo: dict[int, nn.Module] = {}

    def convert(module: nn.Module) -> nn.Module:
        if id(module) in memo:
            return memo[id(module)]
        if isinstance(module, GroupBatchNorm2d):
            module.backend, module.group = backend, group
            new: nn.Module = module
        elif isinstance(module, nn.BatchNorm2d):
            new = _from_batchnorm(module, backend, group)
        else:
            for name, child in module.named_children():
                setattr(module, name, convert(child))
            new = module
        memo[id(module)] = new
        return new

    return convert(model)


def _from_batchnorm(bn: nn.BatchNorm2d, backend: Backend, group: Group | None) -> GroupBatchNorm2d:
    """A GroupBatchNorm2d sharing ``bn``'s parameters and buffers."""
    new = GroupBatchNorm2d(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device="meta",
        backend=backend,
        group=group,
    )
    for name, param in bn.named_parameters(recurse=False):
        setattr(new, name, param)
    for name, buf in bn.named_buffers(recurse=False):
        setattr(new, name, buf)
    new.train(bn.training)
    return new
