"""Small building blocks shared by the encoder, ASPP and decoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from deepcam_hvd.model.execution import current_execution


class Norm2d(nn.Module):
    """A batch-norm layer held as ``.bn``.

    The extra level exists only so that ``state_dict()`` keys read ``<name>.bn.weight`` etc., as
    in the MLCommons reference, whose checkpoints then load without renaming.
    :func:`deepcam_hvd.model.group_batchnorm.convert_batchnorm` swaps the inner layer.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.bn: nn.BatchNorm2d = nn.BatchNorm2d(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W)."""
        return self.bn(x)


def same_padding(kernel_size: int, dilation: int) -> int:
    """Symmetric padding that keeps the spatial size of a stride-1 convolution."""
    effective = kernel_size + (kernel_size - 1) * (dilation - 1)
    return (effective - 1) // 2


class SeparableConv2d(nn.Module):
    """Depthwise ``kernel_size`` convolution (``conv1``) then a 1x1 pointwise one, no bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        padding = same_padding(kernel_size, dilation)
        self.conv1 = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the depthwise then the pointwise convolution."""
        return self.pointwise(self.conv1(x))


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) for every ``Conv2d`` below ``module``; BN to 1 and 0.

    The order of initialisation follows ``module.modules()``, so a fixed seed yields the same
    weights as the reference, which initialises the encoder and ASPP branches the same way.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in NHWC layout when the current execution asks for it, else unchanged.

    Only CPU training passes (autograd recording) switch layout: inference and validation keep
    the reference's NCHW arithmetic bit for bit, and GPUs run as before.
    """
    if (x.is_cpu and x.dim() == 4 and torch.is_grad_enabled()
            and current_execution().channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


class ReLU(nn.ReLU):
    """ReLU that runs in place when the current execution allows (``inplace`` option).

    Only used where autograd permits it: after batch-norm, an affine layer or a convolution,
    none of which needs its output for the backward pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rectify ``x`` (in place if allowed)."""
        return F.relu(x, inplace=self.inplace or current_execution().inplace)


class _SplitLayoutConv(torch.autograd.Function):
    """A convolution whose forward runs in NHWC and whose backward runs in NCHW.

    The input is saved as given; backward computes the input and weight gradients with
    ``aten.convolution_backward`` on contiguous NCHW tensors, where oneDNN's CPU kernels for
    dense 3x3 and transposed convolutions are several times faster than in NHWC.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                params: tuple[Any, ...]) -> torch.Tensor:
        stride, padding, dilation, transposed, output_padding, groups = params
        ctx.save_for_backward(x, weight)
        ctx.params = params
        ctx.bias_shape = None if bias is None else list(bias.shape)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        return torch.ops.aten.convolution(x_nhwc, weight, bias, stride, padding, dilation,
                                          transposed, output_padding, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups = ctx.params
        needs = ctx.needs_input_grad
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.contiguous(), x.contiguous(), weight.contiguous(), ctx.bias_shape, stride,
            padding, dilation, transposed, output_padding, groups,
            [needs[0], needs[1], ctx.bias_shape is not None and needs[2]])
        return grad_x, grad_w, grad_b, None


def _split_wanted(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a decoder convolution should take the split-layout path now."""
    return (x.is_cpu and torch.is_grad_enabled() and current_execution().split_backward
            and (x.requires_grad or weight.requires_grad))


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and initialisation) with the split-layout option.

    With ``Execution.split_backward`` on CPU, the forward pass runs in NHWC and the backward
    pass in NCHW (see :class:`_SplitLayoutConv`); otherwise it is ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x``."""
        if self.padding_mode != "zeros" or not _split_wanted(x, self.weight):
            return super().forward(x)
        params = (list(self.stride), list(self.padding), list(self.dilation), False, [0, 0],
                  self.groups)
        return _SplitLayoutConv.apply(x, self.weight, self.bias, params)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and initialisation) with the split-layout option.

    Only calls without ``output_size`` take the split path.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """Transposed-convolve ``x``."""
        if output_size is not None or not _split_wanted(x, self.weight):
            return super().forward(x, output_size)
        params = (list(self.stride), list(self.padding), list(self.dilation), True,
                  list(self.output_padding), self.groups)
        return _SplitLayoutConv.apply(x, self.weight, self.bias, params)
