"""Three ways to run a pack's forward and backward, timed on the pack's own network (bench/gpu.sh).

A packed step's cost is its forward and backward: on the H200 a step of 20 seed000 DeeperCNNs took
12.6 ms, 0.63 ms per run, against 0.85 ms for a pack of one. Under vmap each convolution of the K
runs is one grouped convolution; whether K ordinary convolutions would do better is a question for
the GPU, so this times the alternatives before any of them goes into `PackedTrainer`:

* ``vmap`` — what `PackedTrainer` does: one `vmap(functional_call)` over the stacked tensors;
* ``loop`` — each run's network called on its row of the stacked tensors (views), one run after
  another: the kernels of K solo runs, K times the launches (which a CUDA graph replays cheaply);
* ``streams`` — the loop with each run on its own CUDA stream, so that the GPU may run the runs'
  kernels side by side (CUDA only; autograd runs each backward op on its forward op's stream).

Each form computes the runs' losses and the gradients of their sum with respect to the stacked
parameters; on CUDA it is captured once as a CUDA graph (as the packed step is) and replayed. A form
that fails (e.g. a capture that is impossible) gets its one-line error instead of a time.
`form_gradients` gives each form's gradients, so the forms can be checked against each other on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from bench.reference import synchronize
from reglab.errors import one_line
from reglab.train.pack_layers import set_batched
from reglab.train.packed import PackedTrainer

FORMS = ("vmap", "loop", "streams")


def _rows(pack: PackedTrainer, k: int) -> tuple[dict, dict]:
    """Run `k`'s parameters and buffers: views of the stacked tensors (buffer updates land in them)."""
    params = {name: view[k] for name, view in pack.param_views().items()}
    return params, {name: buf[k] for name, buf in pack.buffers.items()}


def _forward(pack: PackedTrainer, form: str, x: Tensor, streams: list) -> Tensor:
    """The runs' outputs ``(K, B, …)`` computed by `form` (``streams``: one CUDA stream per run)."""
    if form == "vmap":
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
    for form in FORMS if on_cuda else FORMS[:2]:
        try:
            times[form] = _timed(lambda form=form: form_gradients(pack, form, x, y, streams), pack.device, steps)
        except Exception as err:  # a form this device cannot run, or not as a graph: say why, time the others
            times[form] = one_line(err, first_line=True)
    return times
