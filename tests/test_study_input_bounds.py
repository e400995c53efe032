"""Bounds of what a study, a search parameter and a target accept, at the edges: negative and
too-large seeds, the seed-count limit, a seed in the base table, several targets, statistics that
re-run nothing, a non-dividing integer range, the range-length limit and an infinite target."""

import pytest

from reglab.config import ConfigError
from reglab.study import StudySpec
from reglab.study.spec import MAX_SEEDS
from reglab.study.sweep import MAX_VALUES, parse_param
from reglab.study.target import parse_target

BASE = {"data": {"name": "mnist1d"}, "model": {"options": {"widths": [8]}}}


def spec(**fields) -> StudySpec:
    return StudySpec.from_dict({"name": "t", "base": BASE, "arms": {"base": {}}, **fields})


def test_negative_seeds_are_refused():
    with pytest.raises(ConfigError, match=r"^seeds: must be distinct non-negative integers \(got \[0, -1\]\)"):
        spec(seeds=[0, -1])


def test_seeds_must_be_below_two_to_the_63():
    assert spec(seeds=[2**63 - 1]).seed_list == [2**63 - 1]  # the largest seed the index's integers hold
    with pytest.raises(ConfigError, match=r"^seeds: seed 9223372036854775808 is too large"):
        spec(seeds=[0, 2**63])


def test_the_seed_count_limit_is_inclusive():
    assert len(spec(seeds=MAX_SEEDS).seed_list) == MAX_SEEDS
    with pytest.raises(ConfigError, match=rf"^seeds: at most {MAX_SEEDS} seeds \(got {MAX_SEEDS + 1}\)"):
        spec(seeds=MAX_SEEDS + 1)
    with pytest.raises(ConfigError, match=rf"^seeds: at most {MAX_SEEDS} seeds"):
        spec(seeds=list(range(MAX_SEEDS + 1)))


def test_a_seed_in_the_base_table_is_refused_as_in_an_arm():
    with pytest.raises(ConfigError, match=r"^base.seed: a study sets seeds with `seeds`, not in a run config"):
        spec(base={**BASE, "seed": 3})


def test_one_target_at_a_time():
    with pytest.raises(ConfigError, match=r"statistics.target: .*one metric at a time \(got test_acc, test_loss\)"):
        spec(statistics={"target": {"test_acc": 0.9, "test_loss": 0.2}})


def test_the_statistics_settings_are_not_part_of_the_spec_hash():
    """Changing how a study is compared re-runs nothing: the hash is that of what is trained."""
    plain = spec(seeds=2)
    assert plain.with_statistics(correction="bh").spec_hash == plain.spec_hash
    assert plain.with_statistics(target={"test_acc": 0.5}).spec_hash == plain.spec_hash
    assert plain.with_seeds(3).spec_hash != plain.spec_hash


def test_an_integer_range_that_does_not_divide_evenly_keeps_both_ends():
    """n evenly spaced values from a to b, both included, also where the step is not whole."""
    values = parse_param("train.epochs=0:10:4").values
    assert values[0] == 0 and values[-1] == 10 and len(values) == 4
    assert values == pytest.approx((0, 10 / 3, 20 / 3, 10))
    assert parse_param("train.epochs=0:9:4").values == (0, 3, 6, 9)  # whole steps stay integers


def test_the_range_length_limit_is_inclusive():
    assert len(parse_param(f"dropout=0:0.5:{MAX_VALUES}").values) == MAX_VALUES
    with pytest.raises(ConfigError, match=rf"must be at most {MAX_VALUES} \(got {MAX_VALUES + 1}\)"):
        parse_param(f"dropout=0:0.5:{MAX_VALUES + 1}")


@pytest.mark.parametrize("text", ["test_acc=inf", "test_loss=-inf", "test_acc=nan", "test_acc=1e999"])
def test_a_target_must_be_finite(text):
    with pytest.raises(ConfigError, match="the target must be a finite number"):
        parse_target(text)
