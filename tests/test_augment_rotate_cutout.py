"""Random rotation and cutout (`data.augment.rotate`, `data.augment.cutout`).

Each transform is checked against an independent expectation: rotations against `torch.rot90`, flips
and a constant image; cutout against a brute-force mask written with Python loops and against
DeVries & Taylor's own slicing; the draws' distributions against their analytic laws with tolerances
derived from the sample size. Trainer runs use tiny synthetic images and a small conv net on CPU.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import fake_cifar10, run_cli
from reglab.config import AugmentConfig, ConfigError, DataConfig, RunConfig
from reglab.data import AugmentDraw, TensorData, apply_augmentation, draw_augmentation, load_dataset
from reglab.train.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def turned(x: torch.Tensor, degrees: list[float]) -> torch.Tensor:
    """`x` with sample i rotated by degrees[i] (a hand-made draw, nothing else on)."""
    draw = AugmentDraw(None, None, angles=torch.tensor(degrees).reshape(-1, 1))
    return apply_augmentation(x, AugmentConfig(rotate=180), draw)


def cut(x: torch.Tensor, side: int, centres: list[tuple[int, int]]) -> torch.Tensor:
    """`x` with sample i cut at pixel centres[i] (the fractions of the pixels' middles)."""
    h, w = x.shape[2:]
    fractions = torch.tensor([[(r + 0.5) / h for r, _ in centres], [(c + 0.5) / w for _, c in centres]])
    return apply_augmentation(x, AugmentConfig(cutout=side), AugmentDraw(None, None, centres=fractions[..., None]))


# ---------------------------------------------------------------------------------------- rotation
@pytest.mark.parametrize("size", [6, 7])  # even and odd: the centre between pixels or on one
def test_quarter_and_half_turns_are_rot90_and_a_double_flip_and_zero_is_the_identity(size):
    x = torch.randn(5, 2, size, size, generator=torch.Generator().manual_seed(0))
    out = turned(x, [90, -90, 180, -180, 0])
    expected = torch.stack([x[0].rot90(1, (1, 2)), x[1].rot90(-1, (1, 2)), x[2].flip(1, 2), x[3].flip(1, 2), x[4]])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)  # every pixel, the border included


def test_a_positive_angle_turns_counter_clockwise_as_displayed():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0  # right of the centre (2, 2)
    out = turned(x, [90])
    assert out[0, 0].abs().argmax().item() == 0 * 5 + 2  # now above it: row 0, column 2
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_a_non_square_image_turns_in_pixel_units():
    """A quarter turn of a 5×9 image: its middle 5×5 block turns as `rot90`; the columns the turn brings
    in from outside the image read 0 (no stretching of the 9 columns onto 5 rows)."""
    x = torch.randn(1, 1, 5, 9, generator=torch.Generator().manual_seed(1))
    out = turned(x, [90])
    torch.testing.assert_close(out[..., 2:7], x[..., 2:7].rot90(1, (2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., [0, 1, 7, 8]], torch.zeros(1, 1, 5, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("h", "w"), [(9, 9), (8, 8), (7, 11)])
def test_a_rotated_constant_image_stays_constant_inside_the_inscribed_circle(h, w):
    """Pixel centres within (min(H, W) − 1)/2 of the centre read only real pixels at any angle; at 45°
    the corners read the 0 fill."""
    n = 64
    random = torch.empty(n - 1).uniform_(-180, 180, generator=torch.Generator().manual_seed(0))
    angles = torch.cat([torch.tensor([45.0]), random])
    out = turned(torch.full((n, 3, h, w), 2.5), angles.tolist())
    rows, cols = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    inside = rows.square() + cols.square() <= ((min(h, w) - 1) / 2) ** 2
    torch.testing.assert_close(out[..., inside], torch.full_like(out[..., inside], 2.5), atol=1e-5, rtol=0)
    assert (out[0, :, 0, 0] < 1.0).all() and (out[0, :, -1, -1] < 1.0).all()


def test_angles_are_uniform_on_minus_d_to_d():
    from scipy import stats

    n, d = 20_000, 30.0
    draw = draw_augmentation(n, AugmentConfig(rotate=d), torch.Generator().manual_seed(0))
    angles = draw.angles[:, 0].double()
    assert draw.angles.shape == (n, 1) and draw.offsets is None and draw.flips is None and draw.centres is None
    assert angles.min() >= -d and angles.max() <= d
    assert stats.kstest(angles.numpy(), "uniform", args=(-d, 2 * d)).pvalue > 1e-3
    se_mean, se_var = d / (3 * n) ** 0.5, d**2 * (4 / (45 * n)) ** 0.5  # Var(θ) = d²/3, Var(θ²) = 4d⁴/45
    assert abs(angles.mean().item()) < 5 * se_mean
    assert abs(angles.square().mean().item() - d**2 / 3) < 5 * se_var


# ------------------------------------------------------------------------------------------ cutout
def reference_mask(h: int, w: int, side: int, cy: int, cx: int) -> torch.Tensor:
    """Brute force: pixel (r, c) is cut when cy − ⌊s/2⌋ ≤ r < cy − ⌊s/2⌋ + s, and likewise c."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for r in range(h):
        for c in range(w):
            mask[r, c] = cy - side // 2 <= r < cy - side // 2 + side and cx - side // 2 <= c < cx - side // 2 + side
    return mask


@pytest.mark.parametrize("side", [1, 2, 3, 4, 7])
def test_cutout_zeroes_one_square_clipped_at_the_borders_in_every_channel(side):
    h, w = 5, 7
    centres = [(0, 0), (4, 6), (2, 3), (0, 6), (4, 0), (1, 5)]
    x = 1 + torch.arange(len(centres) * 3 * h * w, dtype=torch.float32).reshape(-1, 3, h, w)  # no zeros
    out = cut(x, side, centres)
    for i, (cy, cx) in enumerate(centres):
        mask = reference_mask(h, w, side, cy, cx)
        rows = min(cy - side // 2 + side, h) - max(cy - side // 2, 0)
        cols = min(cx - side // 2 + side, w) - max(cx - side // 2, 0)
        assert int(mask.sum()) == rows * cols
        assert int((out[i] == 0).sum()) == 3 * rows * cols, (i, side)
        assert torch.equal(out[i], torch.where(mask, 0.0, x[i]))


def test_an_even_side_cuts_what_the_papers_code_cuts():
    """DeVries & Taylor's `Cutout.__call__`: y1 = clip(y − s//2, 0, h), y2 = clip(y + s//2, 0, h),
    mask[y1:y2, x1:x2] = 0 — for every centre of a 6×5 image."""
    h, w, side = 6, 5, 4
    centres = [(cy, cx) for cy in range(h) for cx in range(w)]
    out = cut(torch.ones(len(centres), 1, h, w), side, centres)
    for i, (y, x) in enumerate(centres):
        expected = torch.ones(h, w)
        expected[max(y - side // 2, 0):min(y + side // 2, h), max(x - side // 2, 0):min(x + side // 2, w)] = 0
        assert torch.equal(out[i, 0], expected), (y, x)


@pytest.mark.parametrize("size", [5, 28, 32, 37])
def test_a_centre_fraction_maps_to_its_pixel_up_to_the_last_one(size):
    last_below_one = 1 - 2**-24  # the largest float32 below 1, the largest value `torch.rand` gives
    fractions = torch.tensor([0.0, 0.5 / size, 1.5 / size, (size - 0.5) / size, last_below_one])
    centres = torch.stack([fractions, torch.zeros_like(fractions)])[..., None]
    out = apply_augmentation(torch.ones(5, 1, size, 1), AugmentConfig(cutout=1), AugmentDraw(None, None, None, centres))
    assert (out[:, 0, :, 0] == 0).int().argmax(1).tolist() == [0, 0, 1, size - 1, size - 1]


@pytest.mark.parametrize("side", [3, 4])
def test_cutout_centres_are_uniform_over_the_pixels(side):
    """How often each pixel is cut, over n samples, against p_r·p_c with p_r = |{cy : pixel row r lies in
    the square about cy}| / H; tolerance 5 standard errors of a frequency, √(p(1−p)/n)."""
    n, h, w = 20_000, 6, 5
    cfg = AugmentConfig(cutout=side)
    out = apply_augmentation(torch.ones(n, 1, h, w), cfg, draw_augmentation(n, cfg, torch.Generator().manual_seed(0)))
    frequency = (out[:, 0] == 0).double().mean(0)

    def p(position: int, size: int) -> float:
        return sum(cy - side // 2 <= position < cy - side // 2 + side for cy in range(size)) / size

    expected = torch.tensor([[p(r, h) * p(c, w) for c in range(w)] for r in range(h)], dtype=torch.float64)
    tolerance = 5 * (expected * (1 - expected) / n).sqrt()
    assert ((frequency - expected).abs() <= tolerance).all(), (frequency - expected) / tolerance


# ----------------------------------------------------------------------------- draws, order, slicing
@pytest.mark.parametrize("extra", [{}, {"rotate": 15.0}, {"cutout": 3}, {"rotate": 15.0, "cutout": 3}])
def test_crop_and_flip_draws_are_those_of_the_generator_whatever_else_is_on(extra):
    """The crop offsets and flips are the generator's first draws, as before rotation and cutout existed;
    with those off the generator ends where it did (later draws — mixing — unchanged too)."""
    n, p, seed = 50, 2, 7
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * p + 1, (2, n, 1), generator=g)
    flips = torch.rand(n, 1, generator=g) < 0.5
    mine = torch.Generator().manual_seed(seed)
    draw = draw_augmentation(n, AugmentConfig(crop_padding=p, flip=True, **extra), mine)
    assert torch.equal(draw.offsets, offsets) and torch.equal(draw.flips, flips)
    assert (draw.angles is None) == ("rotate" not in extra) and (draw.centres is None) == ("cutout" not in extra)
    assert torch.equal(mine.get_state(), g.get_state()) == (not extra)


def test_with_rotation_and_cutout_off_crop_and_flip_are_the_padded_window_mirrored():
    n, c, h, w, p = 8, 2, 5, 6, 2
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig(crop_padding=p, flip=True)
    draw = draw_augmentation(n, cfg, torch.Generator().manual_seed(1))
    out, padded = apply_augmentation(x, cfg, draw), F.pad(x, (p, p, p, p))
    for i in range(n):
        dy, dx = draw.offsets[:, i, 0].tolist()
        window = padded[i, :, dy:dy + h, dx:dx + w]
        assert torch.equal(out[i], window.flip(-1) if draw.flips[i, 0] else window)


def test_the_order_is_rotate_crop_flip_cutout():
    n, p = 16, 2
    cfg = AugmentConfig(crop_padding=p, flip=True, rotate=40.0, cutout=3)
    x = torch.randn(n, 2, 7, 7, generator=torch.Generator().manual_seed(0))
    draw = draw_augmentation(n, cfg, torch.Generator().manual_seed(1))
    expected = x
    for step in (AugmentDraw(None, None, angles=draw.angles), AugmentDraw(draw.offsets, None),
                 AugmentDraw(None, draw.flips), AugmentDraw(None, None, centres=draw.centres)):
        expected = apply_augmentation(expected, cfg, step)
    assert torch.equal(apply_augmentation(x, cfg, draw), expected)


def test_rows_slice_the_new_fields_alone_and_stacked_over_runs():
    n = 6
    draw = AugmentDraw(None, None, torch.arange(n, dtype=torch.float32)[:, None],
                       torch.stack([torch.arange(n), 10 + torch.arange(n)])[..., None] / 100)
    part = draw.rows(2, 5)
    assert part.angles[:, 0].tolist() == [2.0, 3.0, 4.0] and part.centres.shape == (2, 3, 1)
    assert (part.centres[1, :, 0] * 100).round().tolist() == [12.0, 13.0, 14.0]
    stacked = AugmentDraw(*(None if t is None else torch.stack([t, t + 1]) for t in draw)).rows(4, 6)
    assert stacked.angles.shape == (2, 2, 1) and stacked.centres.shape == (2, 2, 2, 1)
    assert stacked.angles[1, :, 0].tolist() == [5.0, 6.0]


# --------------------------------------------------------------------------------------- training
def images() -> TensorData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 12, 12, generator=g), torch.randint(0, 3, (96,), generator=g)
    return TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)


def cnn(seed: int = 0, epochs: int = 3, **augment) -> RunConfig:
    return RunConfig.from_dict({
        "seed": seed, "data": {"augment": augment},
        "model": {"name": "deeper_cnn", "norm": "batch", "options": {"channels": [4, 8], "fc_widths": [16]}},
        "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": epochs, "batch_size": 16, "device": "cpu", "eval_train_samples": 32},
    })


def metrics(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


@pytest.mark.parametrize("augment", [{"rotate": 30.0}, {"cutout": 6}], ids=["rotate", "cutout"])
def test_a_run_trains_reproducibly_and_resumes_identically(augment, tmp_path):
    data = images()
    straight = Trainer(cnn(**augment), data=data)
    result = straight.fit()
    assert result.status == "done" and all(math.isfinite(e["train_loss"]) for e in result.epochs)
    assert metrics(Trainer(cnn(**augment), data=data).fit().epochs) == metrics(result.epochs)
    assert metrics(Trainer(cnn(), data=data).fit().epochs) != metrics(result.epochs)  # the option acts
    assert metrics(Trainer(cnn(1, **augment), data=data).fit().epochs) != metrics(result.epochs)

    Trainer(cnn(epochs=1, **augment), data=data).fit(tmp_path)
    resumed = Trainer(cnn(**augment), data=data)
    assert metrics(resumed.fit(tmp_path, extend=True).epochs) == metrics(result.epochs)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize(("field", "value", "message"), [
    ("rotate", -1, "Input should be greater than or equal to 0"),
    ("rotate", 180.5, "Input should be less than or equal to 180"),
    ("rotate", float("nan"), "Input should be a finite number"),
    ("rotate", True, "expected a number"),
    ("cutout", -1, "Input should be greater than or equal to 0"),
    ("cutout", 2.5, "Input should be a valid integer"),
])
def test_out_of_range_values_are_one_line_naming_the_field(field, value, message):
    with pytest.raises(ConfigError, match=rf"^data\.augment\.{field}: {message}") as err:
        RunConfig.from_dict({"data": {"augment": {field: value}}})
    assert "\n" not in str(err.value)


def test_the_bounds_themselves_are_accepted():
    cfg = RunConfig.from_dict({"data": {"augment": {"rotate": 180, "cutout": 0}}}).data.augment
    assert cfg.rotate == 180.0 and cfg.cutout == 0


@pytest.mark.parametrize("field", ["rotate", "cutout"])
def test_non_image_data_is_refused_naming_the_field(field, monkeypatch, capsys):
    with pytest.raises(ConfigError, match=rf"^data\.augment\.{field}: needs images \(N, C, H, W\); mnist1d has "
                                          r"inputs of shape \(40,\)$"):
        load_dataset(DataConfig(name="mnist1d", augment={field: 4}))
    code, _, err = run_cli(monkeypatch, capsys, "train", "--dataset", "mnist1d", "--epochs", "1", "--device", "cpu",
                           "--set", f"data.augment.{field}=4", "--set", "data.train_subset=64")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"data.augment.{field}: needs images" in lines[0], err


def test_a_cutout_wider_than_the_images_is_refused(tmp_path):
    fake_cifar10(tmp_path, per_file=2)
    data = {"name": "cifar10", "data_dir": tmp_path}
    assert load_dataset(DataConfig(**data, augment={"cutout": 32})).x_train.shape[-2:] == (32, 32)
    with pytest.raises(ConfigError, match=r"^data\.augment\.cutout: 33 exceeds the 32×32 images of cifar10$"):
        load_dataset(DataConfig(**data, augment={"cutout": 33}))
