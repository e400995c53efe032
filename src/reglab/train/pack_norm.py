"""BatchNorm inside a pack: one batch-norm kernel for all K runs, and float32 statistics under bf16.

Under `vmap`, torch's batching rule for a batch norm whose weight and bias differ per run normalises
without them and then applies them with separate multiply and add kernels (four more in the
backward), each one more pass over the activations. The runs of a pack are independent channels of
one tensor, though: their activations ``(B, K, C, …)`` are ``(B, K·C, …)`` and their weights, biases
and running statistics ``(K, C)`` are ``(K·C,)``. `pack_batch_norm` is an op whose vmap rule
normalises all runs with one `torch.nn.functional.batch_norm` call on that view, so a pack runs the
kernels a solo run does, forward and backward, and the running statistics of each run are updated
in place in its row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.library.custom_op("reglab::pack_batch_norm", mutates_args=("running_mean", "running_var"))
def pack_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                    momentum: float, eps: float) -> Tensor:
    """Training-mode batch norm. It exists for its vmap rule (`_runs_as_channels`): a pack calls it
    only under vmap, where autograd records the rule's `F.batch_norm`, so it has no autograd formula."""
    return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)


@pack_batch_norm.register_fake
def _(x, weight, bias, running_mean, running_var, momentum, eps):
    return torch.empty_like(x)


def _runs_as_channels(info, in_dims, x, weight, bias, running_mean, running_var, momentum, eps):
    """vmap rule of `pack_batch_norm`: the K runs' channels side by side, one `F.batch_norm` call."""
    x_dim, *row_dims = in_dims[:5]
    if x_dim is None or any(d != 0 for d in row_dims):
        raise ValueError("pack_batch_norm: expects batched activations and (K, C) weights and statistics")
    k = info.batch_size
    x = x.movedim(x_dim, 1)  # (B, K, C, …): a free view of a convolution's output under vmap
    b, c, rest = x.shape[0], x.shape[2], x.shape[3:]
    mean, var = running_mean.view(k * c), running_var.view(k * c)  # views: the update lands in the rows
    out = F.batch_norm(x.reshape(b, k * c, *rest), mean, var, weight.reshape(k * c), bias.reshape(k * c),
                       True, momentum, eps)
    return out.view(b, k, c, *rest), 1


pack_batch_norm.register_vmap(_runs_as_channels)


class PackBatchNorm(nn.Module):
    """A BatchNorm layer of a pack's network: in training, `pack_batch_norm` (one kernel for all runs);
    in evaluation, the layer itself. Its parameters and buffers are the layer's, in the same order."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        norm = self.norm
        if not norm.training:
            return norm(x)
        norm.num_batches_tracked.add_(1)
        return pack_batch_norm(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.momentum,
                               norm.eps)


class Float32Norm(nn.Module):
    """A BatchNorm layer run in float32 under bf16 autocast, in the dtype of its running statistics (vmap's
    own batch-norm backward, used for a layer `PackBatchNorm` does not cover, needs that). The output is
    cast back to the input's dtype, as a solo BatchNorm under autocast returns it, so the activations
    after it stay bf16 (half the bytes)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.norm(x.float()).to(x.dtype)


def pack_batch_norms(model: nn.Module, *, float32: bool = False) -> None:
    """Wrap every BatchNorm layer of `model` in `PackBatchNorm` where it can be (affine, tracking running
    statistics with a momentum), and in `Float32Norm` too when `float32`. Parameters and buffers keep
    their order, by which a pack maps its runs onto the network."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            fused = module.affine and module.track_running_stats and module.momentum is not None
            wrapped = PackBatchNorm(module) if fused else module
            model.set_submodule(name, Float32Norm(wrapped) if float32 else wrapped)
