"""Layers of a pack's network whose runs are channels: one kernel for all K runs, no copies.

Under `vmap` a convolution of K runs is one grouped convolution whose output ``(B, K·C, H, W)`` holds
run k's channels at ``k·C … (k+1)·C − 1``; vmap sees it as ``(B, K, C, H, W)``. Layers that treat
channels independently can therefore process all K runs in one call on that view, but torch's own
batching rules do not:

* batch norm with per-run weight and bias: normalise without them, then separate multiply and add
  kernels (four more in the backward), each one more pass over the activations;
* max-pooling: the runs moved in front, ``(K·B, C, H, W)`` — a copy of the activations, and of the
  pooled output again for the next convolution (both again in the backward).

`pack_batch_norm` and `pack_max_pool2d` are ops whose vmap rules make one `torch.nn.functional` call
on the ``(B, K·C, …)`` view (weights, biases and running statistics ``(K, C)`` as ``(K·C,)``): the
kernels of a solo run, forward and backward (autograd records that call), each run's running
statistics updated in place in its row, and the output left in the layout the next convolution
takes as it is. A pack calls them only under vmap, so they have no autograd formula of their own: a
pack of one runs its network without vmap (`set_batched`), and its layers are then the plain ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _runs_as_channels(x: Tensor, x_dim: int | None, k: int) -> Tensor:
    """Batched activations ``(B, K, C, …)`` as ``(B, K·C, …)`` (a view for a convolution's output)."""
    if x_dim is None:
        raise ValueError("pack layers: expect activations batched over the pack's runs")
    x = x.movedim(x_dim, 1)
    return x.reshape(x.shape[0], k * x.shape[2], *x.shape[3:])


def _runs_back(out: Tensor, k: int) -> tuple[Tensor, int]:
    """``(B, K·C, …)`` seen as batched ``(B, K, C, …)``: the output and its batch dim for vmap."""
    return out.view(out.shape[0], k, out.shape[1] // k, *out.shape[2:]), 1


@torch.library.custom_op("reglab::pack_batch_norm", mutates_args=("running_mean", "running_var"))
def pack_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                    momentum: float, eps: float) -> Tensor:
    """Training-mode batch norm (`F.batch_norm`); under vmap, one call for all runs."""
    return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)


@pack_batch_norm.register_fake
def _(x, weight, bias, running_mean, running_var, momentum, eps):
    return torch.empty_like(x)


@pack_batch_norm.register_vmap
def _(info, in_dims, x, weight, bias, running_mean, running_var, momentum, eps):
    if any(d != 0 for d in in_dims[1:5]):
        raise ValueError("pack_batch_norm: expects (K, C) weights, biases and running statistics")
    k = info.batch_size
    flat = _runs_as_channels(x, in_dims[0], k)
    rows = lambda t: t.reshape(flat.shape[1])  # noqa: E731
    mean, var = running_mean.view(-1), running_var.view(-1)  # views: the update lands in each run's row
    return _runs_back(F.batch_norm(flat, mean, var, rows(weight), rows(bias), True, momentum, eps), k)


@torch.library.custom_op("reglab::pack_max_pool2d", mutates_args=())
def pack_max_pool2d(x: Tensor, kernel_size: list[int], stride: list[int], padding: list[int],
                    dilation: list[int], ceil_mode: bool) -> Tensor:
    """`F.max_pool2d`; under vmap, one call for all runs on their channels side by side."""
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)


@pack_max_pool2d.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode):
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)  # on fake tensors: shapes only


@pack_max_pool2d.register_vmap
def _(info, in_dims, x, kernel_size, stride, padding, dilation, ceil_mode):
    k = info.batch_size
    flat = _runs_as_channels(x, in_dims[0], k)
    return _runs_back(F.max_pool2d(flat, kernel_size, stride, padding, dilation, ceil_mode), k)


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return list(value) if isinstance(value, tuple | list) else [value, value]


class PackBatchNorm(nn.Module):
    """A BatchNorm layer of a pack's network: in training, `pack_batch_norm`; in evaluation, the layer
    itself. Its parameters and buffers are the layer's, in the same order."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.norm, self.batched = norm, True

    def forward(self, x: Tensor) -> Tensor:
        norm = self.norm
        if not norm.training or not self.batched:
            return norm(x)
        norm.num_batches_tracked.add_(1)
        return pack_batch_norm(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.momentum,
                               norm.eps)


class PackMaxPool2d(nn.Module):
    """`nn.MaxPool2d` of a pack's network, through `pack_max_pool2d`."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.args = (_pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding), _pair(pool.dilation),
                     pool.ceil_mode)
        self.batched = True

    def forward(self, x: Tensor) -> Tensor:
        return (pack_max_pool2d if self.batched else F.max_pool2d)(x, *self.args)


class Float32Norm(nn.Module):
    """A BatchNorm layer that `PackBatchNorm` does not cover, run in float32 under bf16 autocast: vmap's
    own batch-norm backward needs the input in the dtype of the (float32) running statistics. The
    output is cast back to the input's dtype, as a solo BatchNorm under autocast returns it.
    (`pack_batch_norm` needs no such casts: its one `F.batch_norm` call takes bf16 activations with
    float32 weights and statistics, as a solo BatchNorm under autocast does.)"""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.norm(x.float()).to(x.dtype)


def set_batched(model: nn.Module, batched: bool) -> None:
    """Whether `model`'s pack layers run under vmap (their ops, runs as channels) or not (a pack of
    one called directly: the plain layers, which autograd differentiates)."""
    for module in model.modules():
        if isinstance(module, PackBatchNorm | PackMaxPool2d):
            module.batched = batched


def pack_layers(model: nn.Module, *, float32_norms: bool = False) -> None:
    """Replace `model`'s BatchNorm layers (affine, tracking running statistics with a momentum) by
    `PackBatchNorm` and its `nn.MaxPool2d` layers (without indices) by `PackMaxPool2d`; wrap the other
    BatchNorm layers in `Float32Norm` when `float32_norms` (bf16 autocast). Parameters and buffers keep
    their order, by which a pack maps its runs onto the network."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.affine and module.track_running_stats and module.momentum is not None:
                model.set_submodule(name, PackBatchNorm(module))
            elif float32_norms:
                model.set_submodule(name, Float32Norm(module))
        elif isinstance(module, nn.MaxPool2d) and not module.return_indices:
            model.set_submodule(name, PackMaxPool2d(module))
