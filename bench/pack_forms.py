"""Four ways to run a pack's forward and backward, timed on the pack's own network (bench/gpu.sh).

A packed step's cost is its forward and backward: on the H200 a bf16 step of 20 seed000 DeeperCNNs
took 6.1 ms, 0.31 ms per run, against 0.68 ms for a pack of one (code 9c2bb4d). Under vmap each
convolution of the K runs is one grouped convolution; whether another form would do better is a
question for the GPU, so this times the alternatives (on the H200 vmap won; docs/performance.md):

* ``vmap`` — what `PackedTrainer` does: one `vmap(functional_call)` over the stacked tensors;
* ``loop`` — each run's network called on its row of the stacked tensors (views), one run after
  another: the kernels of K solo runs, K times the launches (which a CUDA graph replays cheaply);
* ``streams`` — the loop with each run on its own CUDA stream, so that the GPU may run the runs'
  kernels side by side (CUDA only; autograd runs each backward op on its forward op's stream);
* ``gemm`` — vmap, with each convolution of the K runs computed as im2col and one batched matrix
  product (`gemm_conv2d`: `F.unfold`, then ``bmm`` of ``(K, B·L, C·kh·kw)`` by ``(K, C·kh·kw, O)``)
  instead of the grouped convolution, which cuDNN runs group by group on the H200 (docs/performance.md).
  Its im2col copies are the price; on the H200 one large GEMM per layer did not repay them (the pack
  of 20 of source 000's network: 28.0 ms against vmap's 7.2 ms in bf16; docs/performance.md).

Each form computes the runs' losses and the gradients of their sum with respect to the stacked
parameters; on CUDA it is captured once as a CUDA graph (as the packed step is) and replayed. A form
that fails (e.g. a capture that is impossible) gets its one-line error instead of a time.
`form_gradients` gives each form's gradients, so the forms can be checked against each other on CPU.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.reference import synchronize
from reglab.errors import one_line
from reglab.train.pack_layers import set_batched
from reglab.train.packed import PackedTrainer

FORMS = ("vmap", "loop", "streams", "gemm")


@torch.library.custom_op("reglab_bench::gemm_conv2d", mutates_args=())
def gemm_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                dilation: list[int]) -> Tensor:
    """`F.conv2d` (zero padding, one group); under vmap, im2col and one batched matrix product for all runs."""
    return F.conv2d(x, weight, bias, stride, padding, dilation)


@gemm_conv2d.register_fake
def _(x, weight, bias, stride, padding, dilation):
    return F.conv2d(x, weight, bias, stride, padding, dilation)  # on fake tensors: shapes only


@gemm_conv2d.register_vmap
def _(info, in_dims, x, weight, bias, stride, padding, dilation):
    k = info.batch_size
    x, weight = (t.movedim(d, 0) if d is not None else t.expand(k, *t.shape)
                 for t, d in zip((x, weight), in_dims[:2], strict=True))
    _, b, c, h, w = x.shape
    o, kh, kw = weight.shape[1], weight.shape[3], weight.shape[4]
    cols = F.unfold(x.reshape(k * b, c, h, w), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = cols.view(k, b, c * kh * kw, ho * wo).transpose(2, 3).reshape(k, b * ho * wo, c * kh * kw)
    matrix = weight.reshape(k, o, c * kh * kw).transpose(1, 2)
    if bias is None:
        out = torch.bmm(cols, matrix)
    else:
        bias = bias.movedim(in_dims[2], 0) if in_dims[2] is not None else bias.expand(k, o)
        out = torch.baddbmm(bias.unsqueeze(1), cols, matrix)
    return out.view(k, b, ho, wo, o).permute(0, 1, 4, 2, 3), 0  # (K, B, O, Ho, Wo)


def _gemm_conv_forward(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return gemm_conv2d(x, weight, bias, list(conv.stride), list(conv.padding), list(conv.dilation))


@contextlib.contextmanager
def gemm_convolutions(module: nn.Module):
    """`module`'s 2-D convolutions (zero padding, one group) computed by `gemm_conv2d` while inside."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if any(m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str) for m in convs):
        raise ValueError("gemm form: convolutions with groups, non-zero or string padding are not covered")
    for conv in convs:
        conv._conv_forward = types.MethodType(_gemm_conv_forward, conv)
    try:
        yield
    finally:
        for conv in convs:
            del conv._conv_forward


def _rows(pack: PackedTrainer, k: int) -> tuple[dict, dict]:
    """Run `k`'s parameters and buffers: views of the stacked tensors (buffer updates land in them)."""
    params = {name: view[k] for name, view in pack.param_views().items()}
    return params, {name: buf[k] for name, buf in pack.buffers.items()}


def _forward(pack: PackedTrainer, form: str, x: Tensor, streams: list) -> Tensor:
    """The runs' outputs ``(K, B, …)`` computed by `form` (``streams``: one CUDA stream per run)."""
    if form == "vmap":
        return pack.vmapped(pack.param_views(), pack.buffers, x)
    if form == "gemm":
        with gemm_convolutions(pack.module):
            return pack.vmapped(pack.param_views(), pack.buffers, x)
    set_batched(pack.module, False)  # the plain layers, as a solo run has them
    try:
        if form == "loop":
            return torch.stack([pack._functional(*_rows(pack, k), x[k]) for k in range(x.shape[0])])
        main = torch.cuda.current_stream(x.device)
        outs = []
        for k, stream in enumerate(streams):
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                outs.append(pack._functional(*_rows(pack, k), x[k]))
        for stream in streams:
            main.wait_stream(stream)
        return torch.stack(outs)
    finally:
        set_batched(pack.module, pack.batched)


def form_gradients(pack: PackedTrainer, form: str, x: Tensor, y: Tensor, streams: list = ()) -> tuple[Tensor, ...]:
    """Gradients of the sum of the runs' losses on batches ``x (K, B, …)``, ``y (K, B)`` by `form`
    (``streams``: the K CUDA streams of the ``streams`` form)."""
    with pack.autocast():
        out = _forward(pack, form, x, list(streams))
    return torch.autograd.grad(pack._losses(out.float(), y).sum(), pack.leaves)


def _timed(call: Callable[[], object], device: torch.device, steps: int) -> float:
    """Seconds per call: on CUDA one CUDA graph of `call` (after eager warm-up on a side stream), replayed."""
    if device.type == "cuda":
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                call()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            call()
        call = graph.replay
    call()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def time_forms(pack: PackedTrainer, steps: int = 10) -> dict[str, float | str]:
    """Seconds per forward and backward of `pack`'s runs by each form (an error's one line where it fails)."""
    first = pack.trainers[0]
    k, n = len(pack.active), pack.data.x_train.shape[0]
    idx = torch.randint(0, n, (k, first.batch_size), device=pack.device)
    x, y = pack.data.x_train[idx], pack.data.y_train[idx]
    pack.module.train()
    on_cuda = pack.device.type == "cuda"
    streams = [torch.cuda.Stream(pack.device) for _ in range(k)] if on_cuda else []
    times: dict[str, float | str] = {}
    for form in FORMS if on_cuda else [f for f in FORMS if f != "streams"]:
        try:
            times[form] = _timed(lambda form=form: form_gradients(pack, form, x, y, streams), pack.device, steps)
        except Exception as err:  # a form this device cannot run, or not as a graph: say why, time the others
            times[form] = one_line(err, first_line=True)
    return times
