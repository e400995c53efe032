"""Gaussian input noise (`regularize.input_noise`): Bishop's (1995) identity for a linear model, the
noise's statistics, where in the step it acts (after augmentation, before mixing, training only),
reproducibility and resume, packs of runs with their own σ, and bad values.

Monte Carlo tolerances are a few standard errors of the estimate; every draw is seeded."""

import json

import pytest
import torch

from conftest import assert_same_run, mlp_config, pack_step_ops, run_cli
from reglab.config import identity_changes
from reglab.data import TensorData
from reglab.regularize.noise import add_input_noise
from reglab.study.sweep import parse_param
from reglab.train import loop
from reglab.train.loop import Trainer, train_run
from reglab.train.packed import PackedTrainer, pack_groups, pack_key
from reglab.train.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

NOISE = {"regularize.input_noise": 0.5}


def zero_data(n: int = 64, features: tuple[int, ...] = (40,)) -> TensorData:
    """All-zero inputs: what the model sees in training is then the noise itself."""
    labels = torch.arange(n) % 10
    return TensorData("zeros", torch.zeros(n, *features), labels, torch.zeros(16, *features), labels[:16],
                      num_classes=10)


def training_inputs(model: torch.nn.Module, seen: list) -> None:
    """Record every input `model` gets in training mode into `seen`."""
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)


def without_seconds(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


def assert_standard_normal_times(noise: torch.Tensor, sigma: float) -> None:
    """Mean 0 and standard deviation `sigma` within five standard errors of n draws."""
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 * sigma / n ** 0.5
    assert abs(noise.std().item() / sigma - 1) < 5 / (2 * n) ** 0.5  # the std's relative standard error


# ----------------------------------------------------------------------------------- the identity
def test_bishops_identity_for_a_linear_model_and_mse():
    """E_ε ‖W(x + σε) + b − y‖² = ‖Wx + b − y‖² + σ²‖W‖²_F (Bishop 1995), and the expected gradient wrt W
    is that of the right-hand side, 2(Wx + b − y)xᵀ + 2σ²W; batch means over 4 samples, 20 000 draws."""
    g = torch.Generator().manual_seed(0)
    d, m, n, draws, sigma = 5, 3, 4, 20_000, 0.7
    w, b = torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    x, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, m, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    noisy = add_input_noise(x.expand(draws, n, d), sigma)  # one batch per draw, the trainer's function
    weights = w.expand(draws, m, d).clone().requires_grad_(True)  # a copy per draw: per-draw gradients
    losses = (torch.einsum("kmd,knd->knm", weights, noisy) + b - y).pow(2).sum(-1).mean(-1)
    losses.sum().backward()

    residual = x @ w.T + b - y
    expected = residual.pow(2).sum(-1).mean() + sigma ** 2 * w.pow(2).sum()
    assert abs(losses.mean() - expected) < 4 * losses.std() / draws ** 0.5
    assert sigma ** 2 * w.pow(2).sum() > 100 * losses.std() / draws ** 0.5  # the penalty is well resolved
    grads = weights.grad
    expected_grad = 2 * residual.T @ x / n + 2 * sigma ** 2 * w
    assert ((grads.mean(0) - expected_grad).abs() < 4 * grads.std(0) / draws ** 0.5).all()


# ---------------------------------------------------------------------------------- the noise itself
def test_noise_is_standard_normal_times_sigma_per_element_and_per_run():
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 8)
    assert_standard_normal_times(add_input_noise(x, 0.3) - x, 0.3)
    sigma = torch.tensor([0.0, 0.5, 2.0]).view(3, 1, 1, 1, 1)  # a pack's (K, 1, …) σ on its (K, B, …) batch
    batch = x.expand(3, *x.shape)
    noise = add_input_noise(batch, sigma) - batch
    assert torch.equal(noise[0], torch.zeros_like(x))
    for k in (1, 2):
        assert_standard_normal_times(noise[k], sigma[k].item())
    assert not torch.allclose(noise[1] / 0.5, noise[2] / 2.0)  # each run its own draw
    torch.manual_seed(0)
    contiguous = add_input_noise(torch.zeros(4, 3, 5, 5), 1.0)
    torch.manual_seed(0)
    channels_last = add_input_noise(torch.zeros(4, 3, 5, 5).contiguous(memory_format=torch.channels_last), 1.0)
    assert torch.equal(contiguous, channels_last)  # the same draw whatever the memory layout


@pytest.mark.parametrize("packed", [False, True])
def test_training_inputs_carry_noise_of_std_sigma_after_augmentation(packed):
    """Zero images cropped with zero padding: noise added after the crop leaves no exact zero."""
    cfg = mlp_config(**{"regularize.input_noise": 0.5, "data.augment.crop_padding": 2, "train.epochs": 1,
                        "train.batch_size": 32})
    data, seen = zero_data(features=(1, 6, 6)), []
    trainer = Trainer(cfg, data=data)
    if packed:
        pack = PackedTrainer([trainer])
        outputs = pack.outputs
        pack.outputs = lambda leaves, buffers, x: seen.append(x[0].detach().clone()) or outputs(leaves, buffers, x)
        pack.fit()
    else:
        training_inputs(trainer.model, seen)
        trainer.fit()
    noise = torch.cat(seen)
    assert noise.shape == data.x_train.shape and (noise != 0).all()
    assert_standard_normal_times(noise, 0.5)
    assert not torch.allclose(seen[0], seen[1])  # drawn afresh every step


def mixed_variance(sigma: float, blend: torch.Tensor, keys: torch.Tensor, b: int) -> torch.Tensor:
    """Per-sample variance of lam·(x + σε) + (1 − lam)·(x_perm + σε_perm): σ²(lam² + (1 − lam)²), or σ²
    for a sample that is its own partner."""
    own = keys[:b].argsort() == torch.arange(b)
    return sigma ** 2 * torch.where(own, 1.0, blend ** 2 + (1 - blend) ** 2)


@pytest.mark.parametrize("packed", [False, True])
def test_mixup_blends_two_noisy_samples(packed):
    """Noise comes before mixing: a mixed input's noise has variance σ²(lam² + (1 − lam)²), not σ²."""
    mixing = {"regularize.mixup": 1.0, "train.epochs": 2, "train.batch_size": 32}
    configs = [mlp_config(0, **mixing, **NOISE), mlp_config(1, **{**mixing, "regularize.mixup": 0.0},
                                                            **{"regularize.input_noise": 1.0})]
    observed, expected = [], []
    if packed:
        pack = PackedTrainer([Trainer(c, data=zero_data()) for c in configs])
        step, outputs = pack._step, pack.outputs
        mixes = []
        pack._step = lambda idx, draw=None, mix=None: mixes.append(mix) or step(idx, draw, mix)
        pack.outputs = lambda leaves, buffers, x: observed.append(x.detach().clone()) or outputs(leaves, buffers, x)
        pack.fit()
        for x, mix in zip(observed, mixes, strict=True):
            expected.append(torch.stack([mixed_variance(0.5, mix.blend[0], mix.keys[0], x.shape[1]),
                                         torch.full((x.shape[1],), 1.0)]))
    else:
        trainer = Trainer(configs[0], data=zero_data())

        def record(model, args):
            if model.training:
                observed.append(args[0].detach().clone())
                expected.append(mixed_variance(0.5, trainer.mix.blend, trainer.mix.keys, args[0].shape[0]))

        trainer.model.register_forward_pre_hook(record)
        trainer.fit()
    squares = torch.cat([x.pow(2).mean(-1).flatten() for x in observed])  # per sample: mean square over features
    variance = torch.cat([v.flatten() for v in expected])
    elements = sum(x.numel() for x in observed)
    assert abs(squares.sum() / variance.sum() - 1) < 5 * (2 / elements) ** 0.5  # a mean square's relative error


def test_sams_second_pass_sees_the_steps_noisy_batch():
    cfg = mlp_config(**NOISE, **{"regularize.sam_rho": 0.05, "train.epochs": 1, "train.batch_size": 32})
    trainer, seen = Trainer(cfg, data=zero_data()), []
    training_inputs(trainer.model, seen)
    trainer.fit()
    assert len(seen) == 2 * trainer.steps_per_epoch
    for first, second in zip(seen[::2], seen[1::2], strict=True):
        assert (first != 0).all() and torch.equal(first, second)


# -------------------------------------------------------------------------------- σ = 0, training only
def test_sigma_zero_is_the_run_without_the_option_and_draws_nothing(monkeypatch):
    def no_draw(*args):
        raise AssertionError("σ = 0 drew noise")

    monkeypatch.setattr(loop, "add_input_noise", no_draw)
    plain, explicit = Trainer(mlp_config()), Trainer(mlp_config(**{"regularize.input_noise": 0.0}))
    state = torch.get_rng_state()
    explicit_epochs = explicit.fit().epochs
    assert torch.equal(torch.get_rng_state(), state)  # an MLP without dropout or mixing draws nothing globally
    assert without_seconds(plain.fit().epochs) == without_seconds(explicit_epochs)
    for (name, a), b in zip(plain.model.state_dict().items(), explicit.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    stored = mlp_config().to_dict()  # a config written before the field existed resumes as σ = 0
    del stored["regularize"]["input_noise"]
    assert identity_changes(stored, mlp_config().to_dict()) == {}
    assert identity_changes(stored, mlp_config(**NOISE).to_dict()) == {"regularize.input_noise": (0.0, 0.5)}


def test_a_pack_of_sigma_zero_runs_draws_nothing():
    pack = PackedTrainer([Trainer(mlp_config(seed, **{"train.epochs": 1})) for seed in (0, 1)])
    state = torch.get_rng_state()
    pack.fit()
    assert pack.input_noise is None and torch.equal(torch.get_rng_state(), state)


def test_evaluation_sees_clean_inputs():
    noisy = Trainer(mlp_config(**{"regularize.input_noise": 1.0, "train.epochs": 1}))
    result = noisy.fit()
    clean = Trainer(mlp_config(**{"train.epochs": 1}))
    clean.model.load_state_dict(noisy.model.state_dict())
    data, state = noisy.data, torch.get_rng_state()
    for x, y in ((data.x_train[:64], data.y_train[:64]), (data.x_test, data.y_test)):
        assert noisy.evaluate(x, y) == noisy.evaluate(x, y) == clean.evaluate(x, y)
    assert torch.equal(torch.get_rng_state(), state)  # evaluation drew nothing
    assert result.final["test_loss"] == clean.evaluate(data.x_test, data.y_test)["loss"]
    assert result.final["train_eval_loss"] == clean.evaluate(data.x_train[:64], data.y_train[:64])["loss"]


def test_swas_batchnorm_pass_sees_clean_inputs():
    cfg = mlp_config(**{"regularize.input_noise": 1.0, "regularize.swa.epochs": 1, "model.norm": "batch"})
    trainer, seen = Trainer(cfg), []
    training_inputs(trainer.swa.module, seen)
    trainer.fit()
    batches = trainer.data.x_train.split(trainer.batch_size)[:trainer.steps_per_epoch]
    assert len(seen) == len(batches)
    for x, clean in zip(seen, batches, strict=True):
        assert torch.equal(x, clean)


# ---------------------------------------------------------------------------- reproducible, resumable
def test_noise_is_reproducible_per_seed_and_resumes_bit_identically(tmp_path):
    cfg = mlp_config(**NOISE, **{"train.epochs": 3})
    straight = train_run(cfg, run_dir=tmp_path / "a")
    assert without_seconds(train_run(cfg).epochs) == without_seconds(straight.epochs)
    assert without_seconds(train_run(cfg.override({"seed": 1})).epochs) != without_seconds(straight.epochs)
    plain = train_run(cfg.override({"regularize.input_noise": 0.0}))
    assert plain.epochs[0]["train_loss"] != straight.epochs[0]["train_loss"]  # the noise is there
    train_run(cfg.override({"train.epochs": 1}), run_dir=tmp_path / "b")
    resumed = train_run(cfg, run_dir=tmp_path / "b", extend=True)
    assert without_seconds(resumed.epochs) == without_seconds(straight.epochs)
    a, b = (load_checkpoint(tmp_path / d / "model.pt") for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_noise_is_drawn_from_torchs_global_generator():
    """As dropout's masks: the generator `Trainer` seeds with the run's seed and checkpoints."""
    trainer = Trainer(mlp_config(**NOISE, **{"train.epochs": 1}))
    state = torch.get_rng_state()
    trainer.fit()
    assert not torch.equal(torch.get_rng_state(), state)  # an MLP without dropout or mixing: only the noise


# ------------------------------------------------------------------------------------------- packs
def test_runs_that_differ_in_sigma_share_a_pack():
    configs = [mlp_config(0), mlp_config(1, **NOISE), mlp_config(2, **{"regularize.input_noise": 2.0})]
    assert len({pack_key(c) for c in configs}) == 1 and pack_groups(configs) == [[0, 1, 2]]


def step_ops(sigmas: list[float]) -> list[str]:
    """Ops dispatched by one packed step of runs with input noise `sigmas` (after a step of warm-up)."""
    return pack_step_ops([mlp_config(seed, **{"regularize.input_noise": s}) for seed, s in enumerate(sigmas)])


def test_the_noise_of_a_pack_takes_the_same_few_ops_whatever_its_size_and_no_host_sync():
    added = {}
    for k in (2, 16):
        noisy = step_ops([0.0] + [0.5] * (k - 1))
        assert "aten._local_scalar_dense" not in noisy
        added[k] = len(noisy) - len(step_ops([0.0] * k))
    assert 0 < added[16] == added[2] <= 4  # randn, a multiply and an add (or fewer)


def test_a_pack_mixing_sigma_gives_each_run_its_own_noise():
    """σ = 0, 0.5 and 2 in one pack: each run's inputs carry noise of its σ (row 0 none at all), and the
    σ = 0 run trains as alone."""
    sigmas = (0.0, 0.5, 2.0)
    configs = [mlp_config(seed, **{"regularize.input_noise": s, "train.epochs": 1, "train.batch_size": 32})
               for seed, s in enumerate(sigmas)]
    pack, seen = PackedTrainer([Trainer(c, data=zero_data()) for c in configs]), []
    outputs = pack.outputs
    pack.outputs = lambda leaves, buffers, x: seen.append(x.detach().clone()) or outputs(leaves, buffers, x)
    pack.fit()
    assert pack.input_noise.shape == (3, 1, 1)
    noise = torch.cat(seen, dim=1)  # (K, samples, features)
    assert torch.equal(noise[0], torch.zeros_like(noise[0]))
    for k in (1, 2):
        assert_standard_normal_times(noise[k], sigmas[k])
    assert not torch.allclose(noise[1] / sigmas[1], noise[2] / sigmas[2])

    configs = [c.override({"train.epochs": 2}) for c in configs]  # on real data: σ = 0 trains as alone
    solo = Trainer(configs[0])
    packed = [Trainer(c) for c in configs]
    results = PackedTrainer(packed).fit()
    assert_same_run(solo, packed[0], solo.fit().epochs, results[0].epochs)
    assert len({r.final["train_loss"] for r in results}) == 3


# ------------------------------------------------------------------------------------ command line
TRAIN = ["train", "--dataset", "mnist1d", "--epochs", "1", "--device", "cpu", "--set", "data.train_subset=64",
         "--set", "data.test_subset=64", "--set", "model.options.widths=[4]"]


@pytest.mark.parametrize("value, message", [("-1", "Input should be greater than or equal to 0"),
                                            ("nan", "Input should be a finite number"),
                                            ("inf", "Input should be a finite number")])
def test_a_bad_sigma_is_one_line_naming_the_field(value, message, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, *TRAIN, "--input-noise", value)
    assert code == 2 and err.strip().count("\n") == 0
    assert f"regularize.input_noise: {message}" in err


def test_the_flag_sets_the_field_and_the_sweep_knows_its_short_name(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, *TRAIN, "--input-noise", "0.3", "--json")
    assert code == 0 and json.loads(out)["config"]["regularize"]["input_noise"] == 0.3
    assert parse_param("input_noise=0,0.1").path == "regularize.input_noise"
