"""mixup and CutMix: lam in [0, 1] drawn from Beta(α, α), the convex combination, and the exact pasted area."""

import math

import pytest
import torch

from reglab.regularize.mixing import cutmix, draw_mixing, mixup

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    n = shape[0]
    x = torch.arange(n, dtype=torch.float32).view(n, *[1] * (len(shape) - 1)).expand(shape).clone()
    return x, torch.arange(n)  # sample i is filled with the value i; its label is i


def test_mixup_is_the_convex_combination():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 5, 5), torch.arange(16)
    for alpha in (0.2, 1.0, 4.0):
        mixed, y_perm, lam = mixup(x, y, alpha, gen)
        assert 0.0 <= lam <= 1.0
        assert sorted(y_perm.tolist()) == list(range(16))  # a permutation of the batch
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_perm], rtol=0, atol=0)


@pytest.mark.parametrize("alpha", [0.2, 4.0])
def test_mixup_lam_has_the_mean_and_variance_of_beta_alpha_alpha(alpha):
    """Beta(α, α): mean ½, variance 1/(4(2α + 1)); within 4 standard errors over 20,000 draws."""
    torch.manual_seed(0)
    lam = draw_mixing(20_000, 2, (3,), mixup=alpha, generator=torch.Generator().manual_seed(0)).blend.double()
    n, centred = len(lam), lam - lam.mean()
    assert abs(lam.mean().item() - 0.5) < 4 * (lam.var().item() / n) ** 0.5
    var_se = ((centred ** 4).mean().item() - lam.var().item() ** 2) ** 0.5 / n ** 0.5
    assert abs(lam.var().item() - 1 / (4 * (2 * alpha + 1))) < 4 * var_se


def _beta_moment(alpha: float, k: float) -> float:
    from scipy.special import beta

    return beta(alpha + k, alpha) / beta(alpha, alpha)  # E[u^k], u ~ Beta(α, α)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
@pytest.mark.parametrize("shape", [(1000,), (1, 120, 120)])
def test_cutmix_pasted_area_has_its_expectation_under_beta_alpha_alpha(alpha, shape):
    """A segment of length f·L centred uniformly on [0, L) keeps f − f²/4 of L on average after clipping
    (h = fL/2 ≤ L/2 is lost over c ∈ [0, h) and its mirror: ∫(h − c)dc = h²/2 twice); with f = u = 1 − lam
    (1-D) the pasted fraction averages E[u] − E[u²]/4, with f = √u per axis of a box (2-D)
    E[(√u − u/4)²] = E[u] − E[u^1.5]/2 + E[u²]/16."""
    torch.manual_seed(0)
    steps = 20_000 if len(shape) == 1 else 4_000
    box = draw_mixing(steps, 2, shape, cutmix=alpha, generator=torch.Generator().manual_seed(0)).box
    pasted = box.flatten(1).double().mean(1)
    m = lambda k: _beta_moment(alpha, k)  # noqa: E731
    expected = m(1) - m(2) / 4 if len(shape) == 1 else m(1) - m(1.5) / 2 + m(2) / 16
    spread = 4 * pasted.std().item() / steps ** 0.5 + 2 / shape[-1]  # 4 standard errors + the floor of cut
    assert abs(pasted.mean().item() - expected) < spread


@pytest.mark.parametrize("shape", [(32, 3, 17, 12), (32, 1, 40), (32, 40)])
def test_cutmix_pasted_fraction_is_exactly_one_minus_lam(shape):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x, y = _batch(shape)
    spatial = shape[-2] * shape[-1] if len(shape) == 4 else shape[-1]
    channels = shape[1] if len(shape) >= 3 else 1
    lams = []
    for _ in range(30):
        mixed, y_perm, lam = cutmix(x, y, 1.0, gen)
        assert 0.0 <= lam <= 1.0
        moved = y_perm != y
        changed = (mixed != x).flatten(1).sum(1).double()  # pasted cells per sample
        # exact: (1 − lam)·area is the whole number of pasted cells (up to float64 representation)
        assert torch.all((changed[moved] - (1.0 - lam) * spatial * channels).abs() < 1e-9)
        assert torch.all(changed[~moved] == 0)  # a sample paired with itself is unchanged
        # pasted cells hold the partner's values, the rest the sample's own
        partner = y_perm.float().view(-1, *[1] * (len(shape) - 1))
        assert torch.all((mixed == x) | (mixed == partner))
        lams.append(lam)
    assert len(set(lams)) > 10 and min(lams) < 0.5 < max(lams)  # lam really is random


def test_mixing_is_reproducible_and_rejects_bad_input():
    x, y = _batch((8, 1, 6, 6))
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(cutmix(x, y, 0.5, torch.Generator().manual_seed(3)))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][2] == runs[1][2]
    with pytest.raises(ValueError, match="cutmix"):
        cutmix(torch.zeros(8), y, 1.0, torch.Generator())
    with pytest.raises(ValueError, match="α > 0"):
        mixup(x, y, 0.0, torch.Generator())


def test_a_pack_mixes_each_run_as_alone_when_mixup_cutmix_and_plain_runs_share_it():
    """The packed step vmaps `mix_batch` over the runs' stacked draws; a mixup run gets an empty box
    there and a plain run lam 1: each run's (x̃, y_perm, lam) must be what it gets alone."""
    from torch.func import vmap

    from reglab.regularize.mixing import MixDraw, draw_mixing, mix_batch
    from reglab.train.packed import PackedTrainer

    x, y = torch.randn(3, 8, 1, 6, 6), torch.randint(0, 10, (3, 8))
    torch.manual_seed(0)
    draws = [draw_mixing(4, 8, (1, 6, 6), mixup=0.4, generator=torch.Generator().manual_seed(1)),
             draw_mixing(4, 8, (1, 6, 6), cutmix=1.0, generator=torch.Generator().manual_seed(2)), None]
    stacked = PackedTrainer._stack_mixing(draws)
    for step in range(4):
        mixed, partner, lam = vmap(mix_batch, in_dims=(0, 0, MixDraw(0, 0, 0)))(x, y, stacked.step(step))
        for run, draw in enumerate(draws[:2]):
            alone = mix_batch(x[run], y[run], draw.step(step))
            torch.testing.assert_close((mixed[run], partner[run], lam[run]), alone, rtol=0, atol=0)
        assert torch.equal(mixed[2], x[2]) and lam[2] == 1  # no mixing: its own batch, the partner's loss weighted 0
    assert 0 < lam[0] < 1 and 0 < lam[1] < 1


def _lams_and_draw(steps, shape, alpha, seed):
    from reglab.regularize.mixing import draw_mixing

    torch.manual_seed(seed)  # draw_mixing draws lam first, from the global CPU generator (documented)
    lam = torch.distributions.Beta(alpha, alpha).sample((steps,)).double()
    torch.manual_seed(seed)
    draw = draw_mixing(steps, 4, shape, cutmix=alpha, generator=torch.Generator().manual_seed(seed))
    return lam, draw


def _extent(mask_1d: torch.Tensor) -> tuple[int, int, int]:
    idx = mask_1d.nonzero().flatten()
    return (0, -1, -1) if idx.numel() == 0 else (idx.numel(), int(idx[0]), int(idx[-1]))


def test_cutmix_box_sides_are_sqrt_one_minus_lam_of_the_image():
    """Yun et al. (2019): an unclipped box has sides r_h = H·√(1−λ), r_w = W·√(1−λ) (area (1−λ)·HW).
    reglab rounds each side down to an even number of cells: side ∈ (H√(1−λ) − 2, H√(1−λ)]."""
    h, w = 64, 48
    lam, draw = _lams_and_draw(400, (1, h, w), 1.0, seed=0)
    checked = 0
    for i in range(400):
        box = draw.box[i]
        (rows, r0, r1), (cols, c0, c1) = _extent(box.any(1)), _extent(box.any(0))
        if rows == 0 or r0 == 0 or r1 == h - 1 or c0 == 0 or c1 == w - 1:
            continue  # empty, or possibly clipped at a border
        assert int(box.sum()) == rows * cols  # a rectangle
        side = math.sqrt(1 - lam[i].item())
        assert h * side - 2 < rows <= h * side + 1e-9, (i, lam[i].item(), rows)
        assert w * side - 2 < cols <= w * side + 1e-9, (i, lam[i].item(), cols)
        checked += 1
    assert checked > 50


def test_cutmix_1d_segment_has_length_one_minus_lam():
    length = 100
    lam, draw = _lams_and_draw(400, (1, length), 1.0, seed=1)
    checked = 0
    for i in range(400):
        n, lo, hi = _extent(draw.box[i])
        if n == 0 or lo == 0 or hi == length - 1:
            continue
        assert n == hi - lo + 1  # one contiguous segment
        assert length * (1 - lam[i].item()) - 2 < n <= length * (1 - lam[i].item()) + 1e-9
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("mixing", ["mixup", "cutmix"])
def test_mixing_with_a_theory_objective_is_refused_naming_the_field(mixing):
    """A theory objective defines the loss of a batch itself, so it would train without the mixing
    asked for: the config refuses the pair in one line instead."""
    from reglab.config import ConfigError, RunConfig

    with pytest.raises(ConfigError, match=rf"regularize\.{mixing}: not with train\.objective = 'rs'") as err:
        RunConfig.from_dict({"regularize": {mixing: 0.2}, "train": {"objective": "rs"}})
    assert "\n" not in str(err.value)
    RunConfig.from_dict({"regularize": {mixing: 0.2}, "train": {"objective": "drop"}})
