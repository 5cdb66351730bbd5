import pytest

from vidtldr.errors import ScheduleError
from vidtldr.reduce.schedule import parse_schedule, token_counts, tokens_to_remove, tome_decreasing


def test_msrvtt_b16_published_schedule_token_counts():
    sched = parse_schedule("published", 12, dataset="msrvtt", backbone="umt_b")
    assert sched[:4] == [600, 200, 100, 0] and len(sched) == 12
    assert token_counts(sched, 2352)[:5] == [2352, 1752, 1552, 1452, 1452]


def test_fraction_truncates_and_clamps():
    assert tokens_to_remove(0.3, 21) == 6      # int(6.3)
    assert tokens_to_remove(15, 20) == 10      # clamp to T // 2
    assert tokens_to_remove(0.05, 10) == 0     # int(0.5)
    assert tokens_to_remove(0, 10) == 0


def test_grammar():
    assert parse_schedule(8, 3) == [8, 8, 8]
    assert parse_schedule([5], 3) == [5, 0, 0]
    assert parse_schedule(600.0, 1) == [600] and isinstance(parse_schedule(600.0, 1)[0], int)
    assert parse_schedule(None, 2) == [0, 0]
    assert parse_schedule({"r": 10, "inflection": 0}, 4) == [10, 10, 10, 10]
    ramp = tome_decreasing(10, -0.5, 4)
    assert ramp[0] > ramp[-1] and sum(ramp) == pytest.approx(40, abs=4)


@pytest.mark.parametrize("bad", [[1, 2, 3, 4, 5], [-1], [1.5], "fast", [True], {"r": 3}])
def test_bad_schedules_name_the_problem(bad):
    with pytest.raises(ScheduleError, match="merge.r"):
        parse_schedule(bad, 4, dataset="msrvtt", backbone="umt_b")


def test_one_fraction_applies_to_every_block():
    assert parse_schedule(0.1, 4) == [0.1, 0.1, 0.1, 0.1]
    assert parse_schedule(0.25, 2) == [0.25, 0.25]
    # Worked by hand: int(196*0.1)=19, int(177*0.1)=17, int(160*0.1)=16, int(144*0.1)=14.
    assert token_counts([0.1] * 4, 196) == [196, 177, 160, 144, 130]
    # Integers and fractions mix per block; an entry past T // 2 is clamped.
    assert token_counts([0.5, 30, 0, 0.9], 100) == [100, 50, 25, 25, 13]


def test_ramp_values_by_hand():
    # low = int(10 * 1.5) = 15, high = 2*10 - 15 = 5, step = -10/3 over 4 blocks.
    assert tome_decreasing(10, -0.5, 4) == [15, 11, 8, 5]
    assert tome_decreasing(10, 0.5, 3) == [5, 10, 15]
    assert tome_decreasing(7, 0.3, 1) == [7]
    assert parse_schedule((10, -0.5), 4) == [15, 11, 8, 5]
