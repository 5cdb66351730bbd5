"""Retrieval's batching and devices, on stand-in models: texts and videos encoded in batches give
each item its own features with its own mask; the pairwise ITM engine's defaults (k_test 128, 32
pairs a forward); every tensor handed to a model is on the model's device."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vidtldr.tasks.retrieval import NOT_RERANKED, TextFeatures, encode_texts, encode_videos, itm_rerank


class TextModel(torch.nn.Module):
    """Text-mode state of token t = its id where the mask is 1, else 0 (so a lost mask shows)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.batches = []

    def encode_text(self, ids, mask):
        self.batches.append(ids.shape[0])
        return (ids * mask).double()[..., None]  # [B, L, 1]; float64 shows the cast to float32

    def itc_text(self, states):
        return states[:, 0] + 0.5


def test_texts_are_encoded_in_batches_each_with_its_own_mask():
    ids = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 0, 0], [7, 8, 9], [10, 11, 0]])
    mask = (ids > 0).long()
    mask[0, 2] = 0  # a masked real token must come out as 0
    for batch_size, batches in ((2, [2, 2, 1]), (256, [5])):
        model = TextModel()
        out = encode_texts(model, ids, mask, batch_size=batch_size)
        assert model.batches == batches
        assert out.embeds[..., 0].tolist() == [[1, 2, 0], [4, 5, 0], [6, 0, 0], [7, 8, 9], [10, 11, 0]]
        assert out.embeds.dtype == torch.float32 and out.feat.dtype == torch.float32
        assert out.feat[:, 0].tolist() == [1.5, 4.5, 6.5, 7.5, 10.5] and torch.equal(out.mask, mask)
    model = TextModel()
    encode_texts(model, torch.ones(300, 2, dtype=torch.long), torch.ones(300, 2, dtype=torch.long))
    assert model.batches == [256, 44]  # the official chunk of 256 texts


class VideoModel(torch.nn.Module):
    def __init__(self, device="cpu"):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device=device))

    def encode_vision(self, videos, reducer=None):
        assert videos.device == self.weight.device
        b = videos.shape[0]
        first = torch.zeros(b) if videos.is_meta else videos[:, 0, 0, 0, 0].cpu()
        tokens = first[:, None, None].expand(b, 3, 2).double()
        return SimpleNamespace(tokens=tokens, pooled=tokens[:, 0], token_counts=[b, reducer])

    def itc_vision(self, pooled):
        return pooled[:, None] * 2


def test_videos_are_encoded_in_order_with_the_last_batchs_token_counts():
    batches = [torch.full((2, 1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1, 1), 3.0)]
    out = encode_videos(VideoModel(), batches, reducer="r")
    assert out.tokens[:, 0, 0].tolist() == [1.0, 1.0, 3.0] and out.tokens.dtype == torch.float32
    assert out.feat[:, 0, 0].tolist() == [2.0, 2.0, 6.0] and out.feat.dtype == torch.float32
    assert out.token_counts == [1, "r"]  # the counts of the last batch, with the reducer passed on


class MetaModel(torch.nn.Module):
    """Weights on another device ("meta": shapes only): each input must have been moved there.
    Its outputs are zeros on the CPU."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))

    def encode_text(self, ids, mask):
        assert ids.is_meta and mask.is_meta
        return torch.zeros(*ids.shape, 2)

    def itc_text(self, states):
        return states[:, 0]

    def itm_logit(self, embeds, mask, vision):
        assert embeds.is_meta and mask.is_meta and vision.is_meta
        return torch.zeros(embeds.shape[0])


def test_every_input_reaches_the_model_on_the_models_device():
    ids = torch.ones(3, 4, dtype=torch.long)
    assert encode_texts(MetaModel(), ids, ids, batch_size=2).embeds.shape == (3, 4, 2)
    assert encode_videos(VideoModel("meta"), [torch.zeros(2, 1, 1, 1, 1)]).tokens.shape == (2, 3, 2)
    text = TextFeatures(torch.zeros(4, 5, 2), torch.ones(4, 5, dtype=torch.long), torch.zeros(4, 2))
    itc = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.7, 0.2, 0.6, 0.3], [0.5, 0.4, 0.3, 0.95]])
    out = itm_rerank(MetaModel(), itc, text, torch.zeros(3, 6, 2), k_test=2, chunk=1)
    assert int((out.i2t != NOT_RERANKED).sum()) == 6 and int((out.t2i != NOT_RERANKED).sum()) == 8


class PairModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def itm_logit(self, embeds, mask, vision):
        return 10 * embeds[:, 0, 0] + vision[:, 0, 0]


def test_pairwise_defaults_are_the_official_k_test_and_32_pairs_a_forward():
    # 2 videos x 300 texts: each video's top 128 texts (k_test 128) in 4 forwards of 32, then each text's
    # 2 videos (every video: k = min(128, 2)) in one forward
    n = 300
    itc = torch.stack([torch.linspace(0, 1, n), torch.linspace(1, 0, n)])
    text = TextFeatures(torch.arange(1.0, n + 1)[:, None, None].expand(n, 1, 1), torch.ones(n, 1, dtype=torch.long),
                        torch.zeros(n, 2))
    calls = []
    out = itm_rerank(PairModel(), itc, text, torch.tensor([1.0, 2.0])[:, None, None].expand(2, 3, 1),
                     on_pairs=calls.append)
    assert calls == [32] * 4 + [32] * 4 + [2] * n
    assert (out.i2t[0] != NOT_RERANKED).nonzero().flatten().tolist() == list(range(172, 300))
    assert (out.i2t[1] != NOT_RERANKED).nonzero().flatten().tolist() == list(range(128))
    assert out.i2t[0, 299].item() == 10 * 300 + 1 and out.t2i[4, 1].item() == 10 * 5 + 2
    assert (out.stats.pairs, out.stats.written) == (2 * 128 + 2 * n, 2 * 128 + 2 * n)
