"""The grouped ITM engine's bookkeeping on a hand-made case: which pairs it scores (the union of both
directions' candidates), where each logit is written, the -100 everywhere else, a rank's share of
the videos, the engine choice and the defaults. The model is a stand-in whose logit names its pair
(10 * (text + 1) + video + 1), so every expected matrix below is written out by hand."""

from __future__ import annotations

import pytest
import torch

from vidtldr.tasks.itm import itm_rerank_grouped, pairwise_pairs, rerank, text_parts

X = -100.0  # NOT_RERANKED

# 3 videos x 4 texts, k_test = 2. Top 2 of each row (video -> texts) and of each column (text -> videos):
#   v0 -> t0, t1    v1 -> t0, t2    v2 -> t3, t0
#   t0 -> v0, v1    t1 -> v0, v2    t2 -> v1, v2    t3 -> v2, v1
# Union by video: v0 {t0, t1}, v1 {t0, t2, t3}, v2 {t0, t1, t2, t3}: 9 pairs, 14 entries to write.
ITC = torch.tensor([[0.9, 0.8, 0.1, 0.0],
                    [0.7, 0.2, 0.6, 0.3],
                    [0.5, 0.4, 0.3, 0.95]])
LENGTHS = [3, 1, 4, 2]  # valid tokens of t0..t3, right-padded to 5
I2T = [[11, 21, X, X],
       [12, X, 32, X],
       [13, X, X, 43]]
T2I = [[11, 12, X],
       [21, X, 23],
       [X, 32, 33],
       [X, 42, 43]]


class NamingModel(torch.nn.Module):
    """Stands in for UMT's ITM: text j's embeddings carry j + 1, video i's tokens i + 1, and the logit
    of a pair is 10 * (j + 1) + (i + 1). Records each fused batch and each batch of text parts as
    (texts, padded width)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # where the inputs go
        self.batches, self.parts = [], []

    def itm_text_part(self, embeds, mask):
        assert embeds.shape[:2] == mask.shape
        self.parts.append((embeds.shape[0], embeds.shape[1]))
        return embeds

    def itm_video_kv(self, tokens):
        return tokens

    def itm_logit_shared(self, text_part, text_mask, video_kv):
        assert text_part.shape[:2] == text_mask.shape
        self.batches.append((text_part.shape[0], text_part.shape[1]))
        return 10 * text_part[:, 0, 0] + video_kv[0, 0]

    def itm_logit(self, embeds, mask, vision):  # the pairwise engine's pair-by-pair forward
        return 10 * embeds[:, 0, 0] + vision[:, 0, 0]


def _texts(lengths, width=5, hidden=2):
    from vidtldr.tasks.retrieval import TextFeatures

    n = len(lengths)
    embeds = torch.arange(1, n + 1, dtype=torch.float32)[:, None, None].expand(n, width, hidden).clone()
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return TextFeatures(embeds, mask, torch.zeros(n, 4))


def _videos(n, tokens=6, width=2):
    return torch.arange(1, n + 1, dtype=torch.float32)[:, None, None].expand(n, tokens, width).clone()


def test_union_of_candidates_scored_once_and_written_where_each_direction_wants_it():
    model, calls = NamingModel(), []
    out = itm_rerank_grouped(model, ITC, _texts(LENGTHS), _videos(3), k_test=2, chunk=2, on_pairs=calls.append)
    assert out.i2t.tolist() == I2T and out.t2i.tolist() == T2I
    assert out.i2t_topk.tolist() == [[0, 1], [0, 2], [3, 0]]
    assert out.t2i_topk.tolist() == [[0, 1], [0, 2], [1, 2], [2, 1]]
    s = out.stats
    assert (s.engine, s.pairs, s.written) == ("grouped", 9, 14)  # 5 pairs are candidates both ways
    assert pairwise_pairs(3, 4, 2) == 14
    assert dict(s.video_kv) == {6: 3} and dict(s.text_parts) == {4: 4}  # each video, each text once
    assert model.parts == [(4, 4)]  # the text parts at the longest needed length (4), not the padded 5
    # one video at a time, its texts by length (stable), two per batch, padded to the batch's longest:
    # v0: (t1, t0) -> width 3; v1: (t3, t0) -> 3, (t2) -> 4; v2: (t1, t3) -> 2, (t0, t2) -> 4
    assert model.batches == [(2, 3), (2, 3), (1, 4), (2, 2), (2, 4)]
    assert dict(s.pair_shapes) == {(3, 6): 4, (4, 6): 3, (2, 6): 2}
    assert calls == [2, 2, 1, 2, 2]


@pytest.mark.parametrize("videos,pairs,written", [([2], 4, 5), ([0], 2, 4), ([2, 0, 2], 6, 9)])
def test_a_share_of_the_videos_fills_only_their_rows_and_columns(videos, pairs, written):
    out = itm_rerank_grouped(NamingModel(), ITC, _texts(LENGTHS), _videos(3), k_test=2, chunk=2, videos=videos)
    mine = set(videos)
    assert out.i2t.tolist() == [I2T[i] if i in mine else [X] * 4 for i in range(3)]
    assert out.t2i.tolist() == [[T2I[j][i] if i in mine else X for i in range(3)] for j in range(4)]
    assert (out.stats.pairs, out.stats.written) == (pairs, written)
    assert dict(out.stats.video_kv) == {6: len(mine)}
    # only the texts those videos need, at the longest of their lengths: v0 needs t0, t1 (3); v2 all (4)
    assert dict(out.stats.text_parts) == ({4: 4} if 2 in mine else {3: 2})


def test_a_share_whose_texts_are_not_the_first_ones_gives_each_text_its_own_part():
    # v1 alone needs t0, t2, t3 (not t1): its text parts are rows 0, 1, 2 of a 3-row tensor, so text j
    # must be looked up at its own row, not at row j
    model = NamingModel()
    out = itm_rerank_grouped(model, ITC, _texts(LENGTHS), _videos(3), k_test=2, chunk=2, videos=[1])
    assert out.i2t.tolist() == [[X] * 4, I2T[1], [X] * 4]
    assert out.t2i.tolist() == [[X, T2I[j][1], X] for j in range(4)]  # 12, X, 32, 42
    assert (out.stats.pairs, out.stats.written) == (3, 5) and dict(out.stats.text_parts) == {4: 3}
    assert model.parts == [(3, 4)]


def test_a_video_with_a_single_candidate_is_scored():
    # k_test = 1: v0 -> t0, v1 -> t0, v2 -> t3; t0 -> v0, t1 -> v0, t2 -> v1, t3 -> v2. v2's only text is t3.
    out = itm_rerank_grouped(NamingModel(), ITC, _texts(LENGTHS), _videos(3), k_test=1)
    assert out.i2t.tolist() == [[11, X, X, X], [12, X, X, X], [X, X, X, 43]]
    assert out.t2i.tolist() == [[11, X, X], [21, X, X], [X, 32, X], [X, X, 43]]
    assert (out.stats.pairs, out.stats.written) == (5, 7) and pairwise_pairs(3, 4, 1) == 7


class MetaModel(torch.nn.Module):
    """A model whose weights are on another device ("meta": shapes only): every tensor it is handed
    must have been moved there first. Its logits are zeros, on the CPU."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))

    def itm_text_part(self, embeds, mask):
        assert embeds.is_meta and mask.is_meta
        return embeds

    def itm_video_kv(self, tokens):
        assert tokens.is_meta
        return tokens

    def itm_logit_shared(self, text_part, text_mask, video_kv):
        assert text_part.is_meta and text_mask.is_meta and video_kv.is_meta
        return torch.zeros(text_part.shape[0])


def test_every_input_reaches_the_model_on_the_models_device():
    out = itm_rerank_grouped(MetaModel(), ITC, _texts(LENGTHS), _videos(3), k_test=2, chunk=2)
    assert (out.i2t != X).tolist() == [[v != X for v in row] for row in I2T]
    assert (out.t2i != X).tolist() == [[v != X for v in row] for row in T2I]


def test_no_videos_no_work():
    model = NamingModel()
    out = itm_rerank_grouped(model, ITC, _texts(LENGTHS), _videos(3), k_test=2, videos=[])
    assert (out.i2t == X).all() and (out.t2i == X).all()
    assert (out.stats.pairs, out.stats.written) == (0, 0) and not out.stats.text_parts and not model.batches


def test_text_parts_in_batches_are_the_rows_asked_for_trimmed_to_the_width():
    text = _texts(LENGTHS)
    rows = torch.tensor([3, 0, 2])
    for batch_size in (1, 2, 256):
        parts, masks = text_parts(NamingModel(), text, rows, 2, batch_size=batch_size)
        assert parts[:, 0, 0].tolist() == [4.0, 1.0, 3.0] and parts.shape == (3, 2, 2)
        assert masks.tolist() == [[1, 1], [1, 1], [1, 1]]
    _, masks = text_parts(NamingModel(), text, torch.tensor([1, 3]), 4)
    assert masks.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0]]


def test_rerank_runs_the_engine_asked_for_with_its_arguments():
    text, videos = _texts(LENGTHS), _videos(3)
    calls = []
    pairwise = rerank(NamingModel(), ITC, text, videos, engine="pairwise", k_test=2, chunk=1, on_pairs=calls.append)
    assert pairwise.stats.engine == "pairwise" and pairwise.stats.pairs == 14 and calls == [1] * 14
    assert pairwise.i2t.tolist() == I2T and pairwise.t2i.tolist() == T2I  # the same matrices, pair by pair
    share = rerank(NamingModel(), ITC, text, videos, engine="pairwise", k_test=2, video_rows=[1], text_rows=[3])
    assert share.i2t.tolist() == [[X] * 4, I2T[1], [X] * 4] and share.t2i.tolist() == [[X] * 3] * 3 + [T2I[3]]
    calls.clear()
    grouped = rerank(NamingModel(), ITC, text, videos, engine="grouped", k_test=2, chunk=3, video_rows=[1, 2],
                     on_pairs=calls.append)
    assert grouped.stats.engine == "grouped" and calls == [3, 3, 1]  # v1: 3 texts; v2: 4 texts
    assert grouped.i2t.tolist() == [[X] * 4, I2T[1], I2T[2]]
    everything = rerank(NamingModel(), ITC, text, videos, engine="grouped", k_test=4)
    assert (everything.i2t != X).all() and everything.stats.pairs == 12


def test_defaults_are_the_grouped_engine_the_official_k_test_and_32_texts_a_batch():
    # 2 videos x 300 texts: each video keeps its top 128 texts (k_test 128), each text both videos, so
    # every text is scored with every video, 32 texts a batch (9 x 32 + 12 per video); the texts' own
    # parts are computed 256 at a time (256 + 44)
    itc = torch.stack([torch.linspace(0, 1, 300), torch.linspace(1, 0, 300)])
    text = _texts([1] * 300)
    for call in (lambda m: rerank(m, itc, text, _videos(2)), lambda m: itm_rerank_grouped(m, itc, text, _videos(2))):
        model = NamingModel()
        out = call(model)
        assert out.stats.engine == "grouped" and (out.t2i != X).all()
        assert (out.i2t[0] != X).nonzero().flatten().tolist() == list(range(172, 300))  # ITC rising with j
        assert (out.i2t[1] != X).nonzero().flatten().tolist() == list(range(128))  # falling
        assert [n for n, _ in model.batches] == ([32] * 9 + [12]) * 2
        assert model.parts == [(256, 1), (44, 1)]


def test_pairwise_pair_count_by_hand():
    assert pairwise_pairs(6, 12, 3) == 6 * 3 + 12 * 3
    assert pairwise_pairs(6, 12, 8) == 6 * 8 + 12 * 6  # a text has only 6 candidate videos
    assert pairwise_pairs(20, 5, 7) == 20 * 5 + 5 * 7  # a video has only 5 candidate texts
