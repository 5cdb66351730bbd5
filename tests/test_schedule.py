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
