import pytest

from vidtldr.errors import ScheduleError
from vidtldr.reduce.schedule import (
    VIDTLDR_PRESETS, parse_schedule, reproducing_fraction, token_counts, tokens_to_remove, tome_decreasing,
    umt_fractions, umt_fractions_note)


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
    # ToMe's ramp: low = int(r (1 - inflection)), high = 2r - low, linear from low to high, truncated.
    # r = 10, inflection -0.5: low 15, high 5, step -10/3: 15, 11.67, 8.33, 5 -> [15, 11, 8, 5]
    assert tome_decreasing(10, -0.5, 4) == [15, 11, 8, 5]
    # inflection +0.5: low 5, high 15, step 10/3: 5, 8.33, 11.67, 15 -> [5, 8, 11, 15]
    assert parse_schedule((10, 0.5), 4) == [5, 8, 11, 15]
    assert parse_schedule({"r": 10, "inflection": -0.5}, 4) == [15, 11, 8, 5]
    assert tome_decreasing(7, -0.5, 1) == [7]


@pytest.mark.parametrize("bad, message", [
    ([1, 2, 3, 4, 5], "merge.r has 5 entries but the encoder has 4 blocks"),
    ([-1], "merge.r[0]: expected a non-negative value, got -1"),
    ([0, 1.5], "merge.r[1]: 1.5 is neither a token count (whole number) nor a fraction (< 1)"),
    ([float("nan")], "merge.r[0]: expected a non-negative finite value, got nan"),
    ("fast", "merge.r: unknown schedule name 'fast' (expected a list, a number, 'published' or 'umt_fractions')"),
    ([True], "merge.r[0]: expected an int (tokens) or a fraction in [0, 1), got True"),
    ({"r": 3}, "merge.r: a dict schedule needs keys 'r' and 'inflection', got ['r']"),
    ((0.5, -0.5), "merge.r: (r, inflection) needs an integer r, got 0.5"),
    ((1, 2, 3), "merge.r: a tuple schedule is (r, inflection), got (1, 2, 3)"),
])
def test_bad_schedules_name_the_problem(bad, message):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(bad, 4, dataset="msrvtt", backbone="umt_b")
    assert str(info.value) == message


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


def test_boundaries_of_the_grammar():
    # 1 token is a count, not "100 %" of the tokens; a whole float above 1 is a count (600.0 = 600), but
    # 1.0 is refused (issue 22): read as "all of them" it is impossible, as one token per block it costs
    # more than no merging, and nothing in the grammar says which was meant
    assert tokens_to_remove(1, 10) == 1
    assert parse_schedule(2.0, 2) == [2, 2] and all(type(e) is int for e in parse_schedule(2.0, 2))
    for one, where in ((1.0, "merge.r"), ([0, 1.0], "merge.r[1]")):
        with pytest.raises(ScheduleError) as err:
            parse_schedule(one, 2)
        # the whole sentence: both readings, why each is refused, and what to write instead
        assert str(err.value) == (
            f"{where}: 1.0 is ambiguous: a fraction must be below 1 (a block removes at most half of its tokens, "
            "0.5), and as a count it removes 1 token per block, which costs more than no merging (the scoring and "
            "matching are paid at every block); write 1 for one token, or a fraction < 1")
    assert parse_schedule([0, 3], 3) == [0, 3, 0] and parse_schedule(0.0, 2) == [0.0, 0.0]
    assert parse_schedule([1, 2, 3, 4], 4) == [1, 2, 3, 4]  # exactly one entry per block is fine
    assert parse_schedule((4, 0.0), 2) == [4, 4] and parse_schedule({"r": 4, "inflection": 0}, 1) == [4]


@pytest.mark.parametrize("r,message", [
    (-1, "merge.r: expected a non-negative value, got -1"),
    ([2, -3], "merge.r[1]: expected a non-negative value, got -3"),
    (float("nan"), "merge.r: expected a non-negative finite value, got nan"),
    ([float("inf")], "merge.r[0]: expected a non-negative finite value, got inf"),
    (-0.5, "merge.r: expected a non-negative finite value, got -0.5"),
    (2.5, "merge.r: 2.5 is neither a token count (whole number) nor a fraction (< 1)"),
    ([1, 2, 3, 4, 5], "merge.r has 5 entries but the encoder has 4 blocks"),
    ((1, 2, 3), "merge.r: a tuple schedule is (r, inflection), got (1, 2, 3)"),
    ((0.5, -0.2), "merge.r: (r, inflection) needs an integer r, got 0.5"),
    ((-2, 0.0), "merge.r[0]: expected a non-negative value, got -2"),
    ({"r": 3}, "merge.r: a dict schedule needs keys 'r' and 'inflection', got ['r']"),
    ({1, 2}, "merge.r: cannot interpret {1, 2} as a schedule"),
    ("fast", "merge.r: unknown schedule name 'fast' (expected a list, a number, 'published' or 'umt_fractions')"),
])
def test_schedule_errors_name_the_entry_and_the_value(r, message):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(r, 4)
    assert str(info.value) == message


def test_unknown_presets_list_what_exists():
    with pytest.raises(ScheduleError) as info:
        parse_schedule("published", 12, dataset="nope", backbone="umt_b")
    msg = str(info.value)
    assert msg.startswith("merge.r='published': no published vid-TLDR schedule for dataset='nope', backbone='umt_b'. "
                          "Published ones: msrvtt/umt_b, msrvtt/umt_l, msvd/umt_b, ")
    assert msg.endswith(", msvd_qa/umt_l. Pass merge.r=[...] explicitly.")
    with pytest.raises(ScheduleError) as info:
        parse_schedule("published", 12, dataset="msrvtt", backbone="umt_b", reducer="tome")
    assert str(info.value) == (
        "merge.r='published': no ToMe preset for dataset='msrvtt', backbone='umt_b'. Presets exist for umt_b on: "
        "msvd, anet, lsmdc, ssv2_label, ssv2_template, msrvtt_qa, msvd_qa (msrvtt and didemo fit no constant r). "
        "Pass merge.r explicitly.")
    assert parse_schedule("published", 3, dataset="msvd", backbone="umt_b", reducer="tome") == [100, 100, 100]
    with pytest.raises(ScheduleError) as info:
        tome_decreasing(5, 0.0, 0)
    assert str(info.value) == "depth must be >= 1, got 0"


def test_umt_fractions_are_the_published_counts_over_the_tokens_left():
    # UMT-B MSRVTT removes 600, 200, 100 of 12 x 196 = 2352 tokens: 600/2352 = 0.25510..,
    # 200/1752 = 0.11415.., 100/1552 = 0.06443.., each taken up to 4 decimals: rounded to nearest,
    # int(2352 x 0.2551) = 599 would not give the published 600 back
    assert umt_fractions("msrvtt", "umt_b") == [0.2552, 0.1142, 0.0645]
    # UMT-L DiDeMo removes 800 then 100: 800/2352 = 0.34013.., 100/1552 = 0.06443..
    assert umt_fractions("didemo", "umt_l") == [0.3402, 0.0645]
    # of another token count: 600/1000, 200/400 (then the clamp at T // 2 is the run's business)
    assert umt_fractions("msrvtt", "umt_b", num_tokens=1000) == [0.6, 0.5, 0.5]
    # as a named schedule, padded to the depth like a published one
    assert parse_schedule("umt_fractions", 5, dataset="ssv2_label", backbone="umt_l") == \
        [0.1914, 0.1315, 0.0606, 0, 0]  # 450/2352, 250/1902, 100/1652 up to 4 decimals


@pytest.mark.parametrize("key", sorted(VIDTLDR_PRESETS))
def test_umt_fractions_give_back_every_published_schedule_on_its_own_tokens(key):
    published = VIDTLDR_PRESETS[key]
    depth = 12
    counts = token_counts(parse_schedule(umt_fractions(*key), depth), 2352)
    expected = [2352]
    for removed in list(published) + [0] * (depth - len(published)):
        expected.append(expected[-1] - removed)
    assert counts == expected


def test_reproducing_fraction_is_the_smallest_4_decimal_share_that_truncates_to_the_count():
    assert reproducing_fraction(600, 2352) == 0.2552   # 0.255102..: 0.2551 x 2352 = 599.99
    assert reproducing_fraction(500, 2352) == 0.2126   # 0.212585..
    assert reproducing_fraction(1, 4) == 0.25 and reproducing_fraction(0, 10) == 0.0  # exact shares stay exact
    # 192/625 = 0.3072 exactly, but 0.3072 x 625 = 191.99999999999997 in floats: one step up
    assert reproducing_fraction(192, 625) == 0.3073 and int(625 * 0.3073) == 192
    # more tokens than 4 decimals can tell apart: one more digit (1/30000 = 0.0000333..)
    assert reproducing_fraction(1, 30000) == 0.00004 and int(30000 * 0.00004) == 1
    for removed, tokens in ((3, 3), (-1, 4)):
        with pytest.raises(ScheduleError, match=f"cannot remove {removed} of {tokens} tokens as a fraction below 1"):
            reproducing_fraction(removed, tokens)


def test_umt_fractions_refuse_a_pair_without_a_published_schedule():
    with pytest.raises(ScheduleError, match=r"merge.r=umt_fractions: no published vid-TLDR schedule for "
                                            r"kinetics400/videomae_b to take fractions from"):
        parse_schedule("umt_fractions", 12, dataset="kinetics400", backbone="videomae_b")
    with pytest.raises(ScheduleError) as info:
        umt_fractions("msrvtt", "tiny")
    msg = str(info.value)  # what to set instead: every pair with a published schedule, listed
    assert msg.startswith("merge.r=umt_fractions: no published vid-TLDR schedule for msrvtt/tiny to take fractions "
                          "from (set the dataset's schedule_source and the model's schedule_backbone to one of: "
                          "msrvtt/umt_b, msrvtt/umt_l, msvd/umt_b, ")
    assert msg.endswith(", msvd_qa/umt_l), or pass merge.r=[...] explicitly")


def test_umt_fractions_note_never_calls_a_borrowed_schedule_published():
    borrowed = umt_fractions_note("msrvtt", "umt_b", False, "model=videomae_b dataset=kinetics400")
    assert borrowed.startswith("umt_fractions: no vid-TLDR schedule was published for model=videomae_b "
                               "dataset=kinetics400; ")
    assert "umt_b schedule for msrvtt ([600, 200, 100] of 2352 tokens)" in borrowed and "\n" not in borrowed
    own = umt_fractions_note("msrvtt", "umt_b", True, "model=umt_b dataset=msrvtt")
    assert "no vid-TLDR schedule" not in own and "model=umt_b" not in own and own.startswith("umt_fractions: ")
    # the whole line a record carries: where the shares come from, and that they apply to this run's tokens
    source = ("the fractions of the tokens each block removes in vid-TLDR's published umt_b schedule for msrvtt "
              "([600, 200, 100] of 2352 tokens), applied to this run's own tokens")
    assert own == f"umt_fractions: {source}"
    assert borrowed == f"umt_fractions: no vid-TLDR schedule was published for model=videomae_b dataset=kinetics400; {source}"
