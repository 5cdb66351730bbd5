"""Analytic ITM cost per engine (vidtldr.cost.itm) against the independent pairwise count in
vidtldr.cost.text, and the whole-evaluation cost a run records."""

from __future__ import annotations

import pytest

from vidtldr.cost.itm import (engine_cost, evaluation_cost, grouped_pair_cost, qa_evaluation_cost, text_part_cost,
                              video_kv_cost)
from vidtldr.cost.text import TextDims, itm_pair_cost, qa_cost, text_query_cost

UMT_B = TextDims(hidden=768, layers=12, fusion_layer=9, intermediate=3072, encoder_width=768, embed_dim=512)
TINY = TextDims(hidden=64, layers=4, fusion_layer=2, intermediate=128, encoder_width=64, embed_dim=32)


@pytest.mark.parametrize("text", [UMT_B, TINY])
@pytest.mark.parametrize("length,tokens", [(32, 1452), (9, 2352), (1, 5)])
def test_grouped_split_adds_up_to_the_official_pair(text, length, tokens):
    """K/V once per video + text part once per text + the rest per pair = one official pair; in true
    FLOPs the official pair also adds the cross-attention's all-zero mask (per layer, L x N)."""
    whole = itm_pair_cost(text, length, tokens)
    parts = [video_kv_cost(text, tokens), text_part_cost(text, length), grouped_pair_cost(text, length, tokens)]
    assert sum(p.paper_total for p in parts) == whole.paper_total
    assert whole.true_total - sum(p.true_total for p in parts) == (text.layers - text.fusion_layer) * length * tokens


def test_umt_b_kv_projection_is_most_of_a_pair():
    # 3 fusion layers x (K and V) x 1452 tokens x 768 x 768 multiply-adds
    assert video_kv_cost(UMT_B, 1452).paper_total == 3 * 2 * 1452 * 768 * 768
    ratio = itm_pair_cost(UMT_B, 32, 1452).paper_total / grouped_pair_cost(UMT_B, 32, 1452).paper_total
    assert 6 < ratio < 7


def test_engine_cost_from_stats():
    pairwise = {"engine": "pairwise", "pair_shapes": [[32, 1452, 10]], "video_kv": [], "text_parts": []}
    assert engine_cost(UMT_B, pairwise).paper_total == 10 * itm_pair_cost(UMT_B, 32, 1452).paper_total
    grouped = {"engine": "grouped", "pair_shapes": [[12, 1452, 7], [20, 1452, 3]], "video_kv": [[1452, 2]],
               "text_parts": [[12, 4], [20, 1]]}
    want = (7 * grouped_pair_cost(UMT_B, 12, 1452).paper_total + 3 * grouped_pair_cost(UMT_B, 20, 1452).paper_total
            + 2 * video_kv_cost(UMT_B, 1452).paper_total + 4 * text_part_cost(UMT_B, 12).paper_total
            + text_part_cost(UMT_B, 20).paper_total)
    assert engine_cost(UMT_B, grouped).paper_total == want


def test_evaluation_cost_totals():
    stats = {"engine": "grouped", "pair_shapes": [[16, 100, 50]], "video_kv": [[100, 5]], "text_parts": [[16, 10]]}
    out = evaluation_cost(TINY, vision_per_video=(2e9, 5e9), videos=5, texts=10, max_txt_l=32, vision_tokens=100,
                          stats=stats, pairs_pairwise=80, embed_dim=32)
    assert out["vision_encoder"] == {"paper": 10.0, "true": 25.0}
    assert out["text_encoder"]["paper"] == round(10 * text_query_cost(TINY, 32).paper_total / 1e9, 3)
    assert out["itm_pairwise"]["paper"] == round(80 * itm_pair_cost(TINY, 32, 100).paper_total / 1e9, 3)
    parts = ("vision_encoder", "text_encoder", "itc", "itm")
    assert out["total"]["paper"] == pytest.approx(sum(out[k]["paper"] for k in parts), abs=2e-3)
    assert out["total_pairwise"]["paper"] == pytest.approx(
        out["total"]["paper"] - out["itm"]["paper"] + out["itm_pairwise"]["paper"], abs=2e-3)


def test_qa_evaluation_cost_saves_only_the_shared_kv_projections():
    # 40 questions about 25 videos; the grouped engine projected a video's K/V 30 times instead of 40
    out = qa_evaluation_cost(UMT_B, vision_per_video=(178e9, 350e9), videos=25, questions=40, vision_tokens=1452,
                             k=128, max_q_len=25, max_a_len=5, kv_projections=30)
    assert out["vision_encoder"] == {"paper": 4450.0, "true": 8750.0}
    one = qa_cost(UMT_B, 1452, k_test=128, max_q_len=25, max_a_len=5)
    assert out["answering_pairwise"]["paper"] == round(40 * one.paper_total / 1e9, 3)
    # 10 fewer projections x 3 fusion layers x (K, V) x 1452 tokens x 768 -> 768 multiply-adds
    saved_macs = 10 * 3 * 2 * 1452 * 768 * 768
    assert out["answering_pairwise"]["paper"] - out["answering"]["paper"] == pytest.approx(saved_macs / 1e9, abs=2e-3)
    assert out["answering"]["true"] < out["answering_pairwise"]["true"]
    for total, part in (("total", "answering"), ("total_pairwise", "answering_pairwise")):
        for key in ("paper", "true"):
            assert out[total][key] == pytest.approx(out["vision_encoder"][key] + out[part][key], abs=2e-3)
    same = qa_evaluation_cost(UMT_B, vision_per_video=(178e9, 350e9), videos=25, questions=40, vision_tokens=1452,
                              k=128, max_q_len=25, max_a_len=5, kv_projections=40)
    assert same["answering"] == same["answering_pairwise"]  # the official execution: one projection per question
