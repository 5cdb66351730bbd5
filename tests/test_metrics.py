"""Retrieval metrics (official itm_eval semantics) and QA accuracy."""

import math
import random

import numpy as np
import pytest
import torch

from vidtldr.tasks.metrics import OFFICIAL_KEYS, number, qa_accuracy, retrieval_metrics


def _scores_with_ranks(ranks, n_candidates, gt, seed=0):
    """Score matrix [len(ranks), n_candidates] in which query q's ground truth gt[q] sits at
    0-based position ranks[q] of the descending order; all scores distinct."""
    rng = random.Random(seed)
    rows = []
    for q, rank in enumerate(ranks):
        others = [c for c in range(n_candidates) if c != gt[q]]
        rng.shuffle(others)
        order = others[:rank] + [gt[q]] + others[rank:]
        row = [0.0] * n_candidates
        for pos, c in enumerate(order):
            row[c] = float(n_candidates - pos) + 0.01 * rng.random()  # distinct, order preserved
        rows.append(row)
    return np.array(rows, dtype=np.float32)


def test_paragraph_one_to_one_known_ranks():
    n = 12
    t2i_ranks = [0, 0, 1, 4, 5, 9, 10, 11, 3, 2, 0, 7]
    i2t_ranks = [0, 1, 1, 1, 6, 6, 6, 0, 0, 0, 0, 12 - 1]
    gt = list(range(n))
    t2i = _scores_with_ranks(t2i_ranks, n, gt, seed=1)
    i2t = _scores_with_ranks(i2t_ranks, n, gt, seed=2)
    m = retrieval_metrics(i2t, t2i, txt2img={i: i for i in range(n)}, img2txt={i: i for i in range(n)})
    assert m["img_r1"] == 25.0 and m["img_r5"] == 58.33 and m["img_r10"] == 83.33
    assert m["img_r_mean"] == round((25 + 700 / 12 + 1000 / 12) / 3, 2) == 55.56
    assert m["txt_r1"] == 41.67 and m["txt_r5"] == 66.67 and m["txt_r10"] == 91.67
    assert m["r_mean"] == round(((25 + 700 / 12 + 1000 / 12) / 3 + (500 / 12 + 800 / 12 + 1100 / 12) / 3) / 2, 2)
    # 1-based ranks: t2i -> [1,1,2,5,6,10,11,12,4,3,1,8], median 4.5, mean 64/12
    assert m["img_medr"] == 4.5 and m["img_meanr"] == 5.33
    assert m["txt_medr"] == 2.0 and m["txt_meanr"] == round(sum(r + 1 for r in i2t_ranks) / 12, 2)
    assert list(m)[:9] == list(OFFICIAL_KEYS)


def test_multi_caption_video_best_rank_over_captions():
    # 2 videos, video v owns captions 2v and 2v+1
    i2t = np.array([[0.9, 0.1, 0.5, 0.2],     # order 0,2,3,1 -> best of {0,1} at 0
                    [0.8, 0.3, 0.2, 0.7]])    # order 0,3,1,2 -> best of {2,3} at 1
    t2i = np.array([[0.9, 0.1], [0.2, 0.6], [0.3, 0.4], [0.5, 0.1]])  # ranks 0,1,0,1
    m = retrieval_metrics(i2t, t2i, txt2img={0: 0, 1: 0, 2: 1, 3: 1}, img2txt={0: [0, 1], 1: [2, 3]})
    assert (m["txt_r1"], m["txt_r5"], m["img_r1"], m["img_r5"]) == (50.0, 100.0, 50.0, 100.0)
    assert m["txt_medr"] == 1.5 and m["img_meanr"] == 1.5
    # only caption 1 as ground truth for video 0: its rank is 3
    m1 = retrieval_metrics(i2t, t2i, txt2img=[0, 0, 1, 1], img2txt=[[1], [2, 3]])
    assert m1["txt_r1"] == 0.0 and m1["txt_r5"] == 100.0 and m1["txt_meanr"] == (4 + 2) / 2


def test_multi_video_ground_truth_lists_on_text_side():
    # SSv2 style: a text has several correct videos; the best one counts
    t2i = np.array([[0.1, 0.2, 0.9, 0.5],   # gt {0, 3}: 3 at rank 1
                    [0.8, 0.1, 0.3, 0.2]])  # gt {1}: rank 3
    i2t = t2i.T.copy()
    m = retrieval_metrics(i2t, t2i, txt2img={0: [0, 3], 1: [1]}, img2txt={0: 0, 1: 1, 2: 0, 3: 0})
    assert m["img_r1"] == 0.0 and m["img_r5"] == 100.0 and m["img_meanr"] == 3.0
    m_single = retrieval_metrics(i2t, t2i, txt2img={0: 0, 1: 1}, img2txt={0: 0, 1: 1, 2: 0, 3: 0})
    assert m_single["img_meanr"] == (4 + 4) / 2  # video 0 is last for text 0


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(0)
    i2t = rng.standard_normal((5, 10)).astype(np.float32)
    t2i = rng.standard_normal((10, 5)).astype(np.float32)
    maps = dict(txt2img={t: t // 2 for t in range(10)}, img2txt={v: [2 * v, 2 * v + 1] for v in range(5)})
    assert retrieval_metrics(torch.from_numpy(i2t), torch.from_numpy(t2i), **maps) == retrieval_metrics(i2t, t2i, **maps)


@pytest.mark.parametrize("kwargs,match", [
    (dict(i2t=np.zeros((2, 3, 1))), "i2t must be a 2-D"),
    (dict(t2i=np.zeros((2, 3))), r"t2i must be \[N_t, N_v\]"),
    (dict(txt2img={0: 0, 1: 0}), r"txt2img has no entry for queries \[2\]"),
    (dict(img2txt={0: [0, 1], 1: [5]}), r"img2txt\[1\].*outside the 3 candidates"),
    (dict(img2txt={0: [], 1: [2]}), r"img2txt\[0\] must be an int or a non-empty list"),
    (dict(txt2img=[0, 1]), "txt2img has 2 entries, expected 3"),
    (dict(txt2img={0: 0, 1: 0, 2: 1, 7: 1}), "txt2img has keys outside"),
])
def test_validation_names_the_problem(kwargs, match):
    args = dict(i2t=np.zeros((2, 3)), t2i=np.zeros((3, 2)), txt2img={0: 0, 1: 0, 2: 1}, img2txt={0: [0, 1], 1: [2]})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(**args)


# ----------------------------------------------------------------------------- golden fixture

@pytest.fixture(scope="module")
def golden(umt_tiny_dir):
    exp = torch.load(umt_tiny_dir / "expected.pt", weights_only=True)
    inp = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)
    return exp, inp


@pytest.mark.parametrize("mode", ["vidtldr_off", "vidtldr_on"])
def test_fixture_itc_metrics_exact(golden, mode):
    exp, inp = golden
    out = exp[mode]
    m = retrieval_metrics(out["i2t_emb"], out["t2i_emb"], inp["txt2img"], inp["img2txt"])
    for key, value in out["metrics_itc"].items():
        assert m[key] == value, key
    # ranks are tie free for ITC: mean/median ranks follow from the official per-query ranks
    ranks = out["ranks"]["itc"]
    for side, key in (("txt", "i2t_rank"), ("img", "t2i_rank")):
        r = np.asarray(ranks[key]) + 1
        assert m[f"{side}_meanr"] == round(float(r.mean()), 2)
        assert m[f"{side}_medr"] == round(float(np.median(r)), 2)


@pytest.mark.parametrize("mode", ["vidtldr_off", "vidtldr_on"])
def test_fixture_itm_metrics_within_tie_bounds(golden, mode):
    exp, inp = golden
    out = exp[mode]
    m = retrieval_metrics(out["i2t"], out["t2i"], inp["txt2img"], inp["img2txt"])
    ranks = out["ranks"]["itm"]
    checked_exact = 0
    for side in ("txt", "img"):
        for k, b in ranks[f"{side}_bounds"].items():
            key = f"{side}_{k}"
            if b["best_case"] == b["worst_case"]:
                assert m[key] == out["metrics_itm"][key] == round(b["official"], 2), key
                checked_exact += 1
            else:
                assert round(b["worst_case"], 2) <= m[key] <= round(b["best_case"], 2), key
        lo = np.asarray(ranks[f"{'i2t' if side == 'txt' else 't2i'}_rank_tie_lo"]) + 1
        hi = np.asarray(ranks[f"{'i2t' if side == 'txt' else 't2i'}_rank_tie_hi"]) + 1
        assert lo.mean() - 0.005 <= m[f"{side}_meanr"] <= hi.mean() + 0.005
    assert checked_exact >= 2  # at least R@1 in both directions is tie free


# ----------------------------------------------------------------------------- QA

def test_qa_accuracy_known_values():
    gold = {1: "cat", 2: "dog", 3: "red", 4: "two"}
    assert qa_accuracy({1: "cat", 2: "dog", 3: "blue", 4: "two"}, gold) == 75.0
    assert qa_accuracy({1: "cat", 2: "Dog"}, gold) == 25.0  # exact match; missing = wrong
    assert qa_accuracy({}, gold) == 0.0
    assert qa_accuracy({1: "cat", 2: "x", 3: "y"}, {1: "cat", 2: "dog", 3: "red"}) == 33.33


def test_qa_accuracy_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="not in the gold set"):
        qa_accuracy({"1": "cat"}, {1: "cat"})
    with pytest.raises(ValueError, match="empty"):
        qa_accuracy({}, {})


def test_qa_accuracy_on_fixture(umt_tiny_dir):
    qa_in = torch.load(umt_tiny_dir / "qa_inputs.pt", weights_only=True)
    qa_exp = torch.load(umt_tiny_dir / "qa_expected.pt", weights_only=True)
    gold = dict(zip(qa_in["question_ids"].tolist(), qa_in["gt_answers"], strict=True))
    for mode in ("vidtldr_off", "vidtldr_on"):
        pred = {r["question_id"]: r["answer"] for r in qa_exp[mode]["result"]}
        assert qa_accuracy(pred, gold) == qa_exp[mode]["accuracy"]["overall"]


# ----------------------------------------------------------------------------- input checks, by message

def _args(**kwargs):
    args = dict(i2t=np.zeros((2, 3)), t2i=np.zeros((3, 2)), txt2img={0: 0, 1: 0, 2: 1}, img2txt={0: [0, 1], 1: [2]})
    args.update(kwargs)
    return args


def _message(**kwargs) -> str:
    with pytest.raises(ValueError) as info:
        retrieval_metrics(**_args(**kwargs))
    return str(info.value)


@pytest.mark.parametrize("name,shape", [("i2t", (0, 3)), ("i2t", (2, 0)), ("t2i", (0, 2)), ("t2i", (3, 0))])
def test_an_empty_matrix_is_named(name, shape):
    assert _message(**{name: np.zeros(shape)}) == f"{name} is empty (shape {shape})"


def test_non_numeric_scores_and_other_containers_are_named():
    assert _message(t2i=np.array([["a", "b"]] * 3)) == "t2i must be numeric, got dtype <U1"
    assert _message(i2t=np.zeros((2, 3, 1))) == "i2t must be a 2-D score matrix, got shape (2, 3, 1)"
    assert _message(txt2img="abc") == "txt2img must be a dict or a list, got str"
    assert _message(txt2img={0, 1, 2}) == "txt2img must be a dict or a list, got set"


def test_missing_and_outside_keys_are_listed_with_the_valid_range():
    n = 9
    square = dict(i2t=np.zeros((n, n)), t2i=np.zeros((n, n)), img2txt=list(range(n)))
    msg = _message(**square, txt2img={0: 0, 1: 1, 2: 2})  # six missing: five shown, then "..."
    assert msg == "txt2img has no entry for queries [3, 4, 5, 6, 7] ... (9 queries expected, keys 0..8)"
    assert _message(**square, txt2img={i: i for i in range(3, n)}) == \
        "txt2img has no entry for queries [0, 1, 2] (9 queries expected, keys 0..8)"
    five = {i: i for i in range(n) if i not in (0, 1, 2, 3, 4)}
    assert _message(**square, txt2img=five).startswith("txt2img has no entry for queries [0, 1, 2, 3, 4] (9")
    extra = {**{i: i for i in range(n)}, **{k: 0 for k in range(9, 16)}}
    assert _message(**square, txt2img=extra) == "txt2img has keys outside 0..8: [9, 10, 11, 12, 13]"
    assert _message(**square, txt2img={**{i: i for i in range(n)}, 9: 0}) == "txt2img has keys outside 0..8: [9]"


@pytest.mark.parametrize("entry,message", [
    ([0, 3], "img2txt[0] = [0, 3] points outside the 3 candidates: [3]"),  # one past the last text
    ({0, 1}, "img2txt[0] must be an int or a non-empty list of ints, got {0, 1}"),  # a set is not a list
    ([0.0], "img2txt[0] must be an int or a non-empty list of ints, got [0.0]"),
    ([True], "img2txt[0] must be an int or a non-empty list of ints, got [True]"),
    (True, "img2txt[0] must be an int or a non-empty list of ints, got True"),
    ("0", "img2txt[0] must be an int or a non-empty list of ints, got '0'"),
])
def test_bad_ground_truth_entries_are_refused(entry, message):
    assert _message(img2txt={0: entry, 1: [2]}) == message


def test_tensors_that_require_grad_are_accepted():
    t2i = torch.tensor([[0.9, 0.1], [0.2, 0.6], [0.3, 0.4]], requires_grad=True)
    i2t = t2i.detach().T.clone().requires_grad_(True)
    m = retrieval_metrics(i2t, t2i, txt2img=[0, 1, 0], img2txt=[[0, 2], [1]])  # text 2 ranks video 0 second
    assert m["img_r1"] == 66.67 and m["txt_r1"] == 100.0


def test_qa_accuracy_messages():
    with pytest.raises(ValueError) as info:
        qa_accuracy([("1", "cat")], {1: "cat"})
    assert str(info.value) == "qa_accuracy expects two dicts question_id -> answer, got list and dict"
    with pytest.raises(ValueError) as info:
        qa_accuracy({1: "cat"}, [(1, "cat")])
    assert str(info.value) == "qa_accuracy expects two dicts question_id -> answer, got dict and list"
    with pytest.raises(ValueError) as info:
        qa_accuracy({}, {})
    assert str(info.value) == "qa_accuracy: the gold answers are empty"
    with pytest.raises(ValueError) as info:
        qa_accuracy({"a": 1, "b": 2, "c": 3, "d": 4}, {1: "x", 2: "y", 3: "z", 4: "w"})
    assert str(info.value) == ("qa_accuracy: predictions for 4 question ids not in the gold set, e.g. "
                               "['a', 'b', 'c'] (gold ids look like [1, 2, 3])")


def test_number_reads_a_table_cell_as_a_float_or_none():
    # the table rows read each metric through number(): a missing or non-numeric value and pandas'
    # NaN fill become an empty cell (None), not a "nan" that looks like a result
    assert number(None) is None
    assert number(float("nan")) is None and number(np.float32("nan")) is None and number("nan") is None
    assert number("abc") is None and number("") is None  # ValueError
    assert number({"r1": 1}) is None and number([1.0]) is None  # TypeError
    assert number(47.25) == 47.25 and number("47.25") == 47.25 and number(np.float64(0.5)) == 0.5
    out = number(3)
    assert out == 3.0 and type(out) is float
    assert number(0) == 0.0 and number("0") == 0.0  # a zero is a value, not a missing one
    assert number(float("inf")) == math.inf and number("-inf") == -math.inf  # infinities are kept
