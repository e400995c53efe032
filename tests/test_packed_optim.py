"""The batched optimizer equals `torch.optim` run by run: every rule, mixed in one stack, with
per-run schedules, weight decay on a mask, L1/L2 penalty gradients and clipping (≤ 1e-6 relative)."""

import math

import pytest
import torch

from reglab.config import OptimConfig
from reglab.regularize.batched_optim import BatchedOptimizer, RunOptim
from reglab.regularize.optim import lr_factor

SHAPES = [(6, 5), (6,), (3, 6), (3,)]
DECAYED = [True, False, True, False]  # weights decayed and penalised, biases not
OWN_MASK = [True, True, False, False]  # a run that decays other tensors (its own `regularize.penalize`)
STEPS, STEPS_PER_EPOCH = 150, 10

RUNS = [  # (RunOptim, base lr, schedule)
    (RunOptim("sgd"), 0.1, {"name": "constant"}),
    (RunOptim("momentum", momentum=0.9, weight_decay=1e-2), 0.05, {"name": "cosine", "warmup_epochs": 2}),
    (RunOptim("momentum", momentum=0.8, l1=1e-3), 0.05, {"name": "step", "step_size": 3}),
    (RunOptim("nesterov", momentum=0.9, l2=1e-2, grad_clip=0.5), 0.02, {"name": "constant"}),
    (RunOptim("rmsprop", alpha=0.95, eps=1e-6, weight_decay=1e-3), 1e-3, {"name": "cosine"}),
    (RunOptim("adam", betas=(0.8, 0.99), weight_decay=1e-2, l1=1e-4), 3e-3, {"name": "cosine", "warmup_epochs": 1}),
    (RunOptim("adamw", weight_decay=0.1, grad_clip=0.3), 1e-2, {"name": "step", "step_size": 5, "gamma": 0.5}),
    (RunOptim("adamw", betas=(0.95, 0.9), eps=1e-6, weight_decay=0.05, l2=1e-3), 2e-3,
     {"name": "linear", "warmup_epochs": 1, "min_lr": 1e-4}),
]


def torch_optimizer(run: RunOptim, lr: float, params: list[torch.Tensor], decayed: list[bool]) -> torch.optim.Optimizer:
    groups = [{"params": [p for p, d in zip(params, decayed, strict=True) if d], "weight_decay": run.weight_decay},
              {"params": [p for p, d in zip(params, decayed, strict=True) if not d], "weight_decay": 0.0}]
    if run.name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=run.momentum, nesterov=run.nesterov)
    if run.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=run.alpha, eps=run.eps)
    kind = torch.optim.Adam if run.name == "adam" else torch.optim.AdamW
    return kind(groups, lr=lr, betas=run.betas, eps=run.eps)


def lr_table(runs) -> torch.Tensor:
    columns = []
    for _, lr, schedule in runs:
        optim = OptimConfig.model_validate({"lr": lr, "schedule": schedule})
        columns.append([lr * lr_factor(s, optim=optim, steps_per_epoch=STEPS_PER_EPOCH, total_steps=STEPS)
                        for s in range(STEPS)])
    return torch.tensor(columns, dtype=torch.float64).T


def reference(runs, start: list[torch.Tensor], grads: torch.Tensor, masks: list[list[bool]]) -> list[torch.Tensor]:
    """Each run alone with torch.optim, its LambdaLR schedule, penalties added to the gradient and clipping."""
    table = lr_table(runs)
    finals = []
    for k, (run, lr, _) in enumerate(runs):
        params = [p.clone().requires_grad_(True) for p in start[k]]
        optimizer = torch_optimizer(run, lr, params, masks[k])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s, k=k, lr=lr: table[s, k].item() / lr
                                                     if s < STEPS else 1.0)
        for step in range(STEPS):
            flat = grads[step, k]
            offset = 0
            for p, decayed in zip(params, masks[k], strict=True):
                g = flat[offset:offset + p.numel()].view(p.shape).clone()
                offset += p.numel()
                if decayed:
                    g = g + run.l1 * p.detach().sign() + run.l2 * p.detach()
                p.grad = g
            if run.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, run.grad_clip)
            optimizer.step()
            schedule.step()
        finals.append(torch.cat([p.detach().reshape(-1) for p in params]))
    return finals


@pytest.mark.parametrize("subset", ["all", "adam-only", "sgd-only"])
def test_batched_steps_equal_torch_optim_run_by_run(subset):
    runs = RUNS
    if subset == "adam-only":
        runs = [r for r in runs if r[0].name.startswith("adam")]
    elif subset == "sgd-only":
        runs = [r for r in runs if r[0].name in ("sgd", "momentum", "nesterov")]
    optimizer = check_against_torch_optim(runs)
    assert not any(f.fused for f in optimizer.families)  # every family has runs with their own rates
    assert optimizer.spans is not None  # one mask for all: decay and penalties on its spans


def test_runs_that_decay_different_tensors_equal_torch_optim_run_by_run():
    """Rows whose masks differ go through the mask instead of the shared spans; in one family and across."""
    masks = [OWN_MASK if k % 2 else DECAYED for k in range(len(RUNS))]
    optimizer = check_against_torch_optim(RUNS, masks)
    assert optimizer.spans is None  # by family: SGD's and Adam's rows differ, RMSprop has one row
    assert [f.spans is None for f in optimizer.families] == [True, False, True]
    shared = check_against_torch_optim(SHARED["adam"], [OWN_MASK, DECAYED, DECAYED])  # the fused kernel after
    assert shared.families[0].fused and shared.families[0].spans is None


COSINE, STEP = {"name": "cosine", "warmup_epochs": 1}, {"name": "step", "step_size": 4, "gamma": 0.5}
SHARED = {  # runs that share their rule's constants and schedule, with their own decay, penalties, clipping
    "adam": [(RunOptim("adam", weight_decay=1e-2, l1=1e-4), 3e-3, COSINE),
             (RunOptim("adamw", weight_decay=0.1, grad_clip=0.3), 3e-3, COSINE),
             (RunOptim("adamw", l2=1e-3), 3e-3, COSINE)],
    "momentum": [(RunOptim("momentum", momentum=0.9, weight_decay=1e-2), 0.05, COSINE),
                 (RunOptim("momentum", momentum=0.9, l1=1e-3, grad_clip=0.5), 0.05, COSINE)],
    "nesterov": [(RunOptim("nesterov", momentum=0.9, l2=1e-2), 0.02, STEP),
                 (RunOptim("nesterov", momentum=0.9, weight_decay=1e-3), 0.02, STEP)],
    "sgd": [(RunOptim("sgd"), 0.1, STEP), (RunOptim("sgd", weight_decay=1e-2, grad_clip=0.5), 0.1, STEP)],
}


@pytest.mark.parametrize("rule", list(SHARED))
def test_runs_sharing_their_constants_and_rates_step_with_torchs_fused_kernel(rule):
    optimizer = check_against_torch_optim(SHARED[rule])
    assert all(f.fused for f in optimizer.families)


def test_a_family_leaves_the_fused_kernel_when_its_rates_part_and_says_so():
    runs = SHARED["momentum"]
    optimizer = BatchedOptimizer(torch.zeros(2, 4), [r for r, _, _ in runs], torch.ones(2, 4),
                                 torch.full((3, 2), 0.1))
    assert optimizer.families[0].fused
    assert optimizer.set_lr_table(torch.tensor([[0.1, 0.1], [0.1, 0.05]]))  # the step must be captured again
    assert not optimizer.families[0].fused
    assert not optimizer.set_lr_table(torch.tensor([[0.2, 0.1]]))  # no switch, written in place
    assert optimizer.set_lr_table(torch.full((2, 2), 0.3)) and optimizer.families[0].fused


def check_against_torch_optim(runs, masks: list[list[bool]] | None = None) -> BatchedOptimizer:
    """Train the stack of `runs` and each run alone with torch.optim on the same gradients; compare.
    `masks[k]`: which of `SHAPES` run k decays and penalises (default: `DECAYED` for all)."""
    masks = masks or [DECAYED] * len(runs)
    g = torch.Generator().manual_seed(0)
    start = [[torch.randn(s, generator=g) * 0.5 for s in SHAPES] for _ in runs]
    width = sum(math.prod(s) for s in SHAPES)
    grads = torch.randn(STEPS, len(runs), width, generator=g)
    decay = torch.stack([torch.cat([torch.full((math.prod(s),), float(d)) for s, d in zip(SHAPES, mask, strict=True)])
                         for mask in masks])

    params = torch.stack([torch.cat([p.reshape(-1) for p in ps]) for ps in start])
    optimizer = BatchedOptimizer(params, [r for r, _, _ in runs], decay, lr_table(runs))
    norms = []
    for step in range(STEPS):
        norms.append(optimizer.step(params, grads[step].clone()))
    expected = reference(runs, start, grads, masks)
    for k, (run, _, _) in enumerate(runs):
        error = (params[k] - expected[k]).norm() / expected[k].norm()
        assert error < 1e-6, (run.name, error.item())
        assert not torch.equal(params[k], torch.cat([p.reshape(-1) for p in start[k]]))
        if not (run.l1 or run.l2):  # the norm clipping sees: of the gradient, before clipping
            assert norms[0][k].item() == pytest.approx(grads[0, k].norm().item(), rel=1e-5)
    return optimizer


def test_optimizer_state_round_trips_in_torch_names():
    params = torch.randn(2, 4)
    optimizer = BatchedOptimizer(params, [RunOptim("adam"), RunOptim("momentum", momentum=0.9)],
                                 torch.ones(2, 4), torch.full((3, 2), 0.1))
    optimizer.step(params, torch.randn(2, 4))
    assert set(optimizer.run_state(0)) == {"exp_avg", "exp_avg_sq"}
    assert set(optimizer.run_state(1)) == {"momentum_buffer"}
    optimizer.load_run_state(1, {"momentum_buffer": torch.arange(4.0)})
    assert torch.equal(optimizer.families[1].buffers["momentum_buffer"][0], torch.arange(4.0))
    with pytest.raises(ValueError, match="optim.name: unknown optimizer 'lbfgs'"):
        RunOptim("lbfgs")


def test_a_shorter_lr_table_is_written_in_place_and_read_from_its_first_row():
    """A captured CUDA graph reads the table's storage: refilling it must not move it, and the steps
    after a refill must use the new rates from row 0."""
    params = torch.zeros(2, 3)
    sgd = [RunOptim("sgd"), RunOptim("sgd")]
    optimizer = BatchedOptimizer(params, sgd, torch.ones(2, 3), torch.zeros(1, 2))
    assert optimizer.set_lr_table(torch.tensor([9.0, 8.0]).expand(5, 2))  # larger than the first: replaced
    storage = optimizer.lr_table.data_ptr()
    optimizer.step(params, torch.ones(2, 3))
    assert not optimizer.set_lr_table(torch.tensor([[0.5, 0.25], [2.0, 4.0]], dtype=torch.float64))
    assert optimizer.lr_table.data_ptr() == storage
    before = params.clone()
    for _ in range(2):
        optimizer.step(params, torch.ones(2, 3))
    torch.testing.assert_close(before - params, torch.tensor([[2.5], [4.25]]).expand(2, 3))


def test_where_torchs_fused_kernels_fail_the_broadcast_ops_step_instead(monkeypatch):
    """`torch._fused_adam_` is a torch internal: if its first call on a device fails, say so once and
    step with the broadcast ops, which still equal torch.optim."""
    from reglab.regularize import batched_optim

    def broken(*args, **kwargs):
        raise RuntimeError("no such overload\nmore detail")

    monkeypatch.setattr(torch, "_fused_adam_", broken)
    batched_optim.fused_kernels_fail.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"fused optimizer kernels fail on cpu \(RuntimeError: no such overload\)"):
            optimizer = check_against_torch_optim(SHARED["momentum"])
        assert not any(f.fused for f in optimizer.families)
    finally:
        batched_optim.fused_kernels_fail.cache_clear()
