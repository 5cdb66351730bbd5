"""The grouped ITM engine against the official pair-by-pair execution, on the tiny fixture model
(official weights): same candidates, same -100 pattern, logits within float rounding, identical
metrics; shared pairs scored once; short texts in a padded batch; k_test beyond the number of
videos; video shards recombined exactly (in-process and over two gloo ranks); QA question encoding
per video."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidtldr.models import build_model, config_from_official, load_checkpoint
from vidtldr.run import distributed as D
from vidtldr.tasks.itm import candidate_masks, itm_rerank_grouped, pairwise_pairs, rerank, text_lengths
from vidtldr.tasks.metrics import retrieval_metrics
from _models import official_tiny
from vidtldr.tasks.retrieval import NOT_RERANKED, TextFeatures, encode_texts, itc_scores, itm_rerank

ATOL = 1e-5  # fp32 rounding of different matmul shapes; the bound is 1e-4


@pytest.fixture(scope="module")
def tiny(umt_tiny_dir):
    model, inputs, out = official_tiny(umt_tiny_dir)
    text = encode_texts(model, inputs["input_ids"], inputs["attention_mask"])
    i2t_emb = itc_scores(model.itc_vision(out.pooled), text.feat)
    return model, out.tokens, text, i2t_emb


def _shared_pairs(i2t_emb: torch.Tensor, k: int) -> set:
    """(video, text) pairs that are candidates in both directions, from plain top-k lists."""
    n_v, n_t = i2t_emb.shape
    v2t = {(i, j) for i in range(n_v) for j in i2t_emb[i].topk(min(k, n_t)).indices.tolist()}
    t2v = {(i, j) for j in range(n_t) for i in i2t_emb[:, j].topk(min(k, n_v)).indices.tolist()}
    return v2t & t2v


def _assert_same_matrices(a, b):
    assert torch.equal(a.i2t_topk, b.i2t_topk) and torch.equal(a.t2i_topk, b.t2i_topk)
    for x, y in ((a.i2t, b.i2t), (a.t2i, b.t2i)):
        assert torch.equal(x == NOT_RERANKED, y == NOT_RERANKED)
        assert (x - y).abs().max().item() <= ATOL


@pytest.mark.parametrize("k_test,chunk", [(3, 2), (5, 32), (4, 1)])
def test_grouped_equals_pairwise_and_scores_shared_pairs_once(tiny, k_test, chunk):
    model, tokens, text, i2t_emb = tiny
    pairwise = itm_rerank(model, i2t_emb, text, tokens, k_test=k_test, chunk=chunk)
    grouped = itm_rerank_grouped(model, i2t_emb, text, tokens, k_test=k_test, chunk=chunk)
    _assert_same_matrices(pairwise, grouped)
    shared = _shared_pairs(i2t_emb, k_test)
    assert len(shared) >= 9  # many pairs are candidates both ways (6 videos, 12 texts)
    assert pairwise.stats.pairs == pairwise_pairs(6, 12, k_test) == 6 * k_test + 12 * k_test
    assert grouped.stats.pairs == pairwise.stats.pairs - len(shared)  # each shared pair once
    assert grouped.stats.written == pairwise.stats.pairs
    for i, j in shared:  # one logit, written to both matrices
        assert grouped.i2t[i, j] == grouped.t2i[j, i]
    assert sum(grouped.stats.video_kv.values()) == 6  # each video's keys/values projected once
    assert sum(grouped.stats.text_parts.values()) == 12  # each text's video-free part once
    metrics = [retrieval_metrics(s.i2t, s.t2i, {j: j // 2 for j in range(12)}, {i: [2 * i, 2 * i + 1] for i in range(6)})
               for s in (pairwise, grouped)]
    assert metrics[0] == metrics[1]


def test_k_test_beyond_the_number_of_videos_scores_every_pair_once(tiny):
    model, tokens, text, i2t_emb = tiny
    pairwise = itm_rerank(model, i2t_emb, text, tokens, k_test=100, chunk=5)
    grouped = itm_rerank_grouped(model, i2t_emb, text, tokens, k_test=100, chunk=5)
    _assert_same_matrices(pairwise, grouped)
    assert (grouped.i2t != NOT_RERANKED).all() and grouped.t2i_topk.shape == (12, 6)
    assert grouped.stats.pairs == 72 and pairwise.stats.pairs == 144


class _Recorder:
    """The model, recording the (padded width, valid lengths) of every grouped ITM batch."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def itm_logit_shared(self, text_part, text_mask, video_kv):
        self.batches.append((text_part.shape[1], text_mask.sum(1).tolist()))
        return self.model.itm_logit_shared(text_part, text_mask, video_kv)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_texts_shorter_than_their_batch_get_the_logit_of_their_own_pair(tiny, umt_tiny_dir):
    model, tokens, _, i2t_emb = tiny
    inputs = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)
    pad = torch.zeros(12, 4, dtype=torch.long)  # as if max_txt_l were 16: every text has padding
    text = encode_texts(model, torch.cat([inputs["input_ids"], pad], 1), torch.cat([inputs["attention_mask"], pad], 1))
    lengths = text.mask.sum(1)
    assert len(set(lengths.tolist())) > 2 and text.mask.shape[1] > int(lengths.max())  # padded, mixed
    recorder = _Recorder(model)
    grouped = itm_rerank_grouped(recorder, i2t_emb, text, tokens, k_test=6, chunk=8)
    # batches are padded to their own longest text, not to max_txt_l, and hold shorter texts
    assert all(width == max(valid) for width, valid in recorder.batches)
    assert any(min(valid) < width for width, valid in recorder.batches)
    assert max(width for width, _ in recorder.batches) < text.mask.shape[1]
    with torch.no_grad():  # every entry against the official forward of that single pair (full padding)
        for i in range(6):
            for j in range(12):
                direct = model.itm_logit(text.embeds[j:j + 1], text.mask[j:j + 1], tokens[i:i + 1])[0]
                assert abs(grouped.t2i[j, i].item() - direct.item()) <= ATOL  # k_test 6: every video
                if grouped.i2t[i, j] != NOT_RERANKED:
                    assert grouped.i2t[i, j] == grouped.t2i[j, i]


def test_text_lengths_are_one_past_the_last_valid_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert text_lengths(mask).tolist() == [3, 1, 4, 1]


def test_candidate_masks_mark_each_direction():
    i2t_topk = torch.tensor([[2, 0], [1, 2]])
    t2i_topk = torch.tensor([[1], [0], [0]])
    in_i2t, in_t2i = candidate_masks(i2t_topk, t2i_topk)
    assert in_i2t.tolist() == [[True, False, True], [False, True, True]]
    assert in_t2i.tolist() == [[False, True, True], [True, False, False]]


def test_video_shards_recombine_to_the_full_matrices_exactly(tiny):
    """What the ranks do in one process: each scores its videos' pairs; its i2t rows and t2i columns
    are kept (the others zeroed) and summed."""
    model, tokens, text, i2t_emb = tiny
    full = rerank(model, i2t_emb, text, tokens, engine="grouped", k_test=4, chunk=3)
    i2t, t2i = torch.zeros_like(full.i2t), torch.zeros_like(full.t2i)
    pairs = 0
    for rank in range(4):  # 6 videos over 4 ranks: shares of 2, 2, 1, 1
        rows = D.shard(range(6), D.DistContext(rank=rank, world_size=4))
        part = rerank(model, i2t_emb, text, [tokens[i] for i in range(6)], engine="grouped", k_test=4, chunk=3,
                      video_rows=rows)
        others = [i for i in range(6) if i not in rows]
        assert (part.i2t[others] == NOT_RERANKED).all() and (part.t2i[:, others] == NOT_RERANKED).all()
        own = torch.zeros(6, dtype=torch.bool)
        own[rows] = True
        i2t += torch.where(own[:, None], part.i2t, 0.0)
        t2i += torch.where(own[None, :], part.t2i, 0.0)
        pairs += part.stats.pairs
    assert torch.equal(i2t, full.i2t) and torch.equal(t2i, full.t2i)
    assert pairs == full.stats.pairs


def _texts_needed(i2t_emb: torch.Tensor, videos, k: int) -> set:
    """Texts that are candidates of ``videos`` in either direction, from plain top-k lists."""
    return {j for i, j in _candidate_pairs(i2t_emb, k) if i in videos}


def _candidate_pairs(i2t_emb: torch.Tensor, k: int) -> set:
    n_v, n_t = i2t_emb.shape
    v2t = {(i, j) for i in range(n_v) for j in i2t_emb[i].topk(min(k, n_t)).indices.tolist()}
    t2v = {(i, j) for j in range(n_t) for i in i2t_emb[:, j].topk(min(k, n_v)).indices.tolist()}
    return v2t | t2v


@pytest.mark.parametrize("world_size", [3, 6])
def test_a_share_of_videos_that_needs_only_some_texts_gives_the_pairwise_metrics(tiny, world_size):
    """A rank's share (or ``videos=``) whose candidates do not include every text: the grouped engine
    computes the text parts of the needed texts only, and each text must still get its own part."""
    model, tokens, text, i2t_emb = tiny
    k_test = 2
    pairwise = itm_rerank(model, i2t_emb, text, tokens, k_test=k_test, chunk=3)
    i2t = torch.full_like(pairwise.i2t, NOT_RERANKED)
    t2i = torch.full_like(pairwise.t2i, NOT_RERANKED)
    needs = []
    for rank in range(world_size):
        rows = D.shard(range(6), D.DistContext(rank=rank, world_size=world_size))
        needs.append(len(_texts_needed(i2t_emb, set(rows), k_test)))
        part = rerank(model, i2t_emb, text, tokens, engine="grouped", k_test=k_test, chunk=3, video_rows=rows)
        i2t[rows], t2i[:, rows] = part.i2t[rows], part.t2i[:, rows]
    assert min(needs) < 12  # some share lacks texts (k_test 2: e.g. videos 4, 5 need texts 1, 5, 6, 8 only)
    _assert_same_matrices(pairwise, dataclasses.replace(pairwise, i2t=i2t, t2i=t2i))
    gold = ({j: j // 2 for j in range(12)}, {i: [2 * i, 2 * i + 1] for i in range(6)})
    assert retrieval_metrics(i2t, t2i, *gold) == retrieval_metrics(pairwise.i2t, pairwise.t2i, *gold)


def _ranks_worker(rank: int, world: int, init_file: str, out: str, umt_tiny_dir: str) -> None:
    import pathlib

    import torch.distributed as dist

    from vidtldr.run.runner_retrieval import _itm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        root = pathlib.Path(umt_tiny_dir)
        model = build_model(config_from_official(root / "config.json", root / "bert_config.json"))
        load_checkpoint(model, root / "checkpoint.pth")
        data = torch.load(out + ".in", weights_only=True)
        text = TextFeatures(data["embeds"], data["mask"], data["feat"])
        ctx = D.DistContext(rank=rank, world_size=world, backend="gloo")
        got = {}
        for engine in ("grouped", "pairwise"):
            scores = _itm(model, data["i2t_emb"], text, data["tokens"], engine, 4, 3, False, ctx, None)
            got[engine] = {"i2t": scores.i2t, "t2i": scores.t2i, "pairs": scores.stats.pairs}
        if rank == 0:
            torch.save(got, out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_combine_both_engines_to_the_single_process_matrices(tiny, tmp_path, umt_tiny_dir):
    import torch.multiprocessing as mp

    model, tokens, text, i2t_emb = tiny
    out = str(tmp_path / "out.pt")
    torch.save({"embeds": text.embeds, "mask": text.mask, "feat": text.feat, "i2t_emb": i2t_emb, "tokens": tokens},
               out + ".in")
    mp.spawn(_ranks_worker, args=(2, str(tmp_path / "init"), out, str(umt_tiny_dir)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    for engine in ("grouped", "pairwise"):
        single = rerank(model, i2t_emb, text, tokens, engine=engine, k_test=4, chunk=3)
        assert torch.equal(got[engine]["i2t"], single.i2t) and torch.equal(got[engine]["t2i"], single.t2i)
        assert got[engine]["pairs"] == single.stats.pairs  # every rank's work counted once


def test_bf16_autocast_runs_both_engines_to_the_same_candidates(tiny):
    model, tokens, text, i2t_emb = tiny
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pairwise = itm_rerank(model, i2t_emb, text, tokens, k_test=3, chunk=4)
        grouped = itm_rerank_grouped(model, i2t_emb, text, tokens, k_test=3, chunk=4)
    assert torch.equal(pairwise.i2t == NOT_RERANKED, grouped.i2t == NOT_RERANKED)
    reference = itm_rerank(model, i2t_emb, text, tokens, k_test=3, chunk=4)
    assert (grouped.i2t - reference.i2t).abs().max().item() < 0.1  # bf16 rounding, not a different result
    assert (grouped.i2t - pairwise.i2t).abs().max().item() < 0.1


def test_unknown_engine_is_a_config_error(tiny):
    from vidtldr.errors import ConfigError

    model, tokens, text, i2t_emb = tiny
    with pytest.raises(ConfigError, match="eval.itm_engine must be one of grouped, pairwise; got 'fast'"):
        rerank(model, i2t_emb, text, tokens, engine="fast")


# ----------------------------------------------------------------------------- QA


def test_questions_of_one_video_share_its_keys_and_values(umt_tiny_dir):
    from vidtldr.tasks.qa import question_states_grouped, rank_from_states, rank_questions

    model = build_model(config_from_official(umt_tiny_dir / "config.json", task="qa"))
    load_checkpoint(model, umt_tiny_dir / "qa_checkpoint.pth")
    qa = torch.load(umt_tiny_dir / "qa_inputs.pt", weights_only=True)
    videos = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)["videos"][:2]
    with torch.no_grad():
        tokens = model.encode_vision(videos).tokens
    keys = ["a", "b", "a", "a", "b", "a"]  # six questions about two videos, interleaved
    reads = []

    def vision_of(key):
        reads.append(key)
        return tokens[0 if key == "a" else 1]

    ids, mask = qa["question_input_ids"], qa["question_attention_mask"]
    states = question_states_grouped(model, vision_of, keys, ids, mask)
    assert sorted(reads) == ["a", "b"]  # each video read once
    per_question = torch.stack([tokens[0 if k == "a" else 1] for k in keys])
    with torch.no_grad():
        want = model.encode_question(per_question, ids, mask)
    assert (states - want).abs().max().item() <= ATOL
    got = rank_from_states(model, states, mask, qa["answer_input_ids"], qa["answer_attention_mask"], k=5)
    ref = rank_questions(model, per_question, ids, mask, qa["answer_input_ids"], qa["answer_attention_mask"], k=5)
    assert torch.equal(got[0], ref[0]) and (got[1] - ref[1]).abs().max().item() <= ATOL


def test_qa_runs_give_the_same_predictions_with_either_engine(tmp_path):
    """Runner level: the tiny MSRVTT-QA split has a clip with two questions (one shared K/V)."""
    from _eval_helpers import make_cfg

    from vidtldr.run.runner import run

    records = {e: run(make_cfg(tmp_path / "cache", "dataset=msrvtt_qa", f"eval.itm_engine={e}"), tmp_path / e,
                      progress=False) for e in ("grouped", "pairwise")}
    assert records["grouped"]["metrics"] == records["pairwise"]["metrics"]
    assert (tmp_path / "grouped" / "predictions.json").read_text() == \
        (tmp_path / "pairwise" / "predictions.json").read_text()


def test_run_records_the_whole_evaluation_cost_of_either_engine(tmp_path):
    from _eval_helpers import make_cfg

    from vidtldr.run.runner import run

    cost = {e: run(make_cfg(tmp_path / "cache", f"eval.itm_engine={e}"), tmp_path / e, progress=False)["cost"]
            for e in ("grouped", "pairwise")}
    for engine, c in cost.items():
        assert c["itm_engine"] == engine
        assert c["pairs"]["pairwise"] == 7 * 4 + 7 * 4  # tiny MSRVTT: 7 videos, 7 texts, k_test 4
        assert set(c["seconds"]) == {"decode", "vision", "text", "itc", "itm"}
        assert all(v >= 0 for v in c["seconds"].values())
        assert c["gflops"]["vision_encoder"]["paper"] > 0 and c["gflops"]["text_encoder"]["paper"] > 0
    # The official execution: 56 pairs, each text padded to max_txt_l 32, each video's 196 tokens cut to
    # 124 by the published tiny schedule [48, 24, 0, 0]. Counted by hand from the tiny dims below.
    pairwise = cost["pairwise"]
    assert pairwise["pairs"]["scored"] == 56 and pairwise["itm_work"]["pair_shapes"] == [[32, 124, 56]]
    want = {"paper": round(56 * _pair_paper(32, 124) / 1e9, 3), "true": round(56 * _PAIR_TRUE_32_124 / 1e9, 3)}
    assert want == {"paper": 0.336, "true": 0.679}  # 335_584_256 and 679_282_800 flops
    assert pairwise["gflops"]["itm"] == want and pairwise["gflops"]["itm_pairwise"] == want
    grouped = cost["grouped"]
    assert grouped["pairs"]["scored"] < 56 and grouped["pairs"]["written"] == 56
    assert grouped["gflops"]["itm_pairwise"] == want  # what the official engine would have cost
    work = grouped["itm_work"]
    assert work["video_kv"] == [[124, 7]]  # each video's keys/values once
    assert sum(n for _, n in work["text_parts"]) == 7 and sum(p for *_, p in work["pair_shapes"]) == \
        grouped["pairs"]["scored"]
    split = (sum(p * _grouped_pair_paper(n, v) for n, v, p in work["pair_shapes"])
             + 7 * 2 * _kv_paper(124) + sum(t * _self_attention_paper(n) for n, t in work["text_parts"]))
    assert grouped["gflops"]["itm"]["paper"] == round(split / 1e9, 3) < want["paper"]


# Paper-convention counts (one multiply-add = 1, layer norm = 5 per element, the rest free) of the tiny
# text model's two fusion layers: hidden H 64, intermediate I 128, vision width 64.
_H, _I, _W = 64, 128, 64


def _self_attention_paper(n):  # q, k, v, out projections; q.k^T and A.v; layer norm
    return 4 * n * _H * _H + 2 * n * n * _H + 5 * n * _H


def _kv_paper(v):  # cross-attention keys and values of v vision tokens
    return 2 * v * _W * _H


def _cross_rest_paper(n, v):  # cross query and output projections, q.k^T and A.v, layer norm
    return 2 * n * _H * _H + 2 * n * v * _H + 5 * n * _H


def _ffn_paper(n):
    return 2 * n * _H * _I + 5 * n * _H


def _pair_paper(n, v):  # the official pair: both fusion layers in full, then the 2-way ITM head on [CLS]
    return 2 * (_self_attention_paper(n) + _kv_paper(v) + _cross_rest_paper(n, v) + _ffn_paper(n)) + 2 * _H


def _grouped_pair_paper(n, v):  # what depends on both: all but the video K/V and the text's first self-attention
    return _self_attention_paper(n) + 2 * (_cross_rest_paper(n, v) + _ffn_paper(n)) + 2 * _H


# True flops of one official pair at n = 32, v = 124 (multiply-add = 2; bias, residual, scale and mask add = 1
# per element; softmax 4, GELU 5, layer norm 7), per fusion layer:
#   self-attention   2*32*64*256 (q,k,v,out) + 2*2*32*32*64 (q.k^T, A.v) + 32*256 (biases)
#                    + 6*32*32 (scale, mask, softmax) + 2048 (residual) + 7*2048        = 1_341_440
#   cross-attention  2*(32*64*128 + 124*64*128) (q,out; k,v) + 2*2*32*124*64 + (2048+15872+2048) (biases)
#                    + 6*32*124 + 2048 + 7*2048                                           = 3_631_872
#   feed-forward     2*2*32*64*128 + (4096+2048) (biases) + 5*32*128 + 2048 + 7*2048    = 1_091_584
# and the ITM head: 2*64*2 + 2 (bias) = 258.
_PAIR_TRUE_32_124 = 2 * (1_341_440 + 3_631_872 + 1_091_584) + 2 * 2 * _H + 2


@pytest.mark.cuda
def test_grouped_engine_on_cuda_in_fp32_and_fp16(tiny):
    """On the GPU: the same candidates, fp32 logits within float rounding of the pairwise execution,
    and fp16 autocast (the official evaluation's precision) close to them."""
    import copy

    model, tokens, text, i2t_emb = tiny
    gpu = copy.deepcopy(model).cuda()
    pairwise = itm_rerank(gpu, i2t_emb, text, tokens, k_test=4, chunk=3)
    grouped = itm_rerank_grouped(gpu, i2t_emb, text, tokens, k_test=4, chunk=3)
    _assert_same_matrices(pairwise, grouped)
    with torch.autocast("cuda", dtype=torch.float16):
        half = itm_rerank_grouped(gpu, i2t_emb, text, tokens, k_test=4, chunk=3)
    assert torch.equal(half.i2t == NOT_RERANKED, pairwise.i2t == NOT_RERANKED)
    assert (half.i2t - pairwise.i2t).abs().max().item() < 0.05 and (half.t2i - pairwise.t2i).abs().max().item() < 0.05


def test_itm_stats_sum_over_ranks_and_serialise():
    from collections import Counter

    from vidtldr.tasks.retrieval import ITMStats

    a = ITMStats("grouped", pairs=3, written=5, pair_shapes=Counter({(12, 100): 3}),
                 video_kv=Counter({100: 1}), text_parts=Counter({12: 3}))
    b = ITMStats("grouped", pairs=2, written=2, pair_shapes=Counter({(12, 100): 1, (8, 90): 1}),
                 video_kv=Counter({90: 1, 100: 1}), text_parts=Counter({8: 1}))
    both = a.add(b)
    assert (both.engine, both.pairs, both.written) == ("grouped", 5, 7)
    assert both.to_dict() == {"engine": "grouped", "pairs": 5, "written": 7,
                              "pair_shapes": [[8, 90, 1], [12, 100, 4]],
                              "video_kv": [[90, 1], [100, 2]],
                              "text_parts": [[8, 1], [12, 3]]}
    assert a.to_dict()["pairs"] == 3  # adding leaves the operands as they were
