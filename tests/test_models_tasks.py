"""Retrieval scoring (ITC, ITM re-ranking in both directions) and QA ranking over batches."""

from pathlib import Path

import pytest
import torch

from vidtldr.models import build_model, config_from_official, load_checkpoint
from vidtldr.tasks.qa import QABatch, rank_all
from _models import official_tiny
from vidtldr.tasks.retrieval import NOT_RERANKED, TextFeatures, encode_texts, itc_scores, itm_rerank


@pytest.fixture(scope="module")
def retrieval(umt_tiny_dir):
    model, inputs, out = official_tiny(umt_tiny_dir)
    text = encode_texts(model, inputs["input_ids"], inputs["attention_mask"], batch_size=5)
    return model, out, text


def test_itc_is_plain_cosine_similarity(retrieval):
    model, out, text = retrieval
    vision = model.itc_vision(out.pooled)
    scores = itc_scores(vision, text.feat)
    want = torch.nn.functional.cosine_similarity(model.vision_proj(out.pooled)[:, 0, None],
                                                 model.text_proj(text.embeds[:, 0])[None], dim=-1)
    assert scores.shape == (6, 12) and torch.allclose(scores, want, atol=1e-6)
    assert torch.allclose(itc_scores(vision[:, 0], text.feat), scores)


def test_itm_rerank_fills_top_k_with_itm_logits_and_the_rest_with_minus_100(retrieval):
    model, out, text = retrieval
    i2t_emb = itc_scores(model.itc_vision(out.pooled), text.feat)
    scores = itm_rerank(model, i2t_emb, text, out.tokens, k_test=3, chunk=2)
    for i in range(6):
        top = set(i2t_emb[i].topk(3).indices.tolist())
        assert set(torch.nonzero(scores.i2t[i] != NOT_RERANKED).flatten().tolist()) == top
        for j in top:
            direct = model.itm_logit(text.embeds[j:j + 1], text.mask[j:j + 1], out.tokens[i:i + 1])
            assert torch.allclose(scores.i2t[i, j], direct[0], atol=1e-5)
    for j in range(12):
        top = set(i2t_emb[:, j].topk(3).indices.tolist())
        assert set(torch.nonzero(scores.t2i[j] != NOT_RERANKED).flatten().tolist()) == top
        for i in top:
            direct = model.itm_logit(text.embeds[j:j + 1], text.mask[j:j + 1], out.tokens[i:i + 1])
            assert torch.allclose(scores.t2i[j, i], direct[0], atol=1e-5)
            if scores.i2t[i, j] != NOT_RERANKED:  # a pair re-ranked in both directions scores the same
                assert torch.allclose(scores.t2i[j, i], scores.i2t[i, j], atol=1e-5)
    one_chunk = itm_rerank(model, i2t_emb, text, out.tokens, k_test=3, chunk=32)
    assert torch.allclose(one_chunk.i2t, scores.i2t, atol=1e-5)
    everything = itm_rerank(model, i2t_emb, text, out.tokens, k_test=100)
    assert (everything.i2t != NOT_RERANKED).all() and everything.t2i_topk.shape == (12, 6)


def test_non_candidates_hold_exactly_minus_100_like_the_official_matrices(retrieval, umt_tiny_dir):
    """The fill is the official -100.0 itself (metrics break ties among it), not just "some constant":
    the re-ranked matrices equal the official ones, -100 cells included, for the fixture's k_test=4."""
    model, out, text = retrieval
    official = torch.load(umt_tiny_dir / "expected.pt", weights_only=True)["vidtldr_off"]
    scores = itm_rerank(model, itc_scores(model.itc_vision(out.pooled), text.feat), text, out.tokens, k_test=4)
    assert NOT_RERANKED == -100.0
    for ours, theirs, k in ((scores.i2t, official["i2t"], 4), (scores.t2i, official["t2i"], 4)):
        filled = theirs == -100.0
        assert torch.equal(ours == -100.0, filled) and int((~filled).sum()) == k * ours.shape[0]
        assert torch.allclose(ours[~filled], theirs[~filled].float(), atol=1e-4)


def test_text_features_do_not_depend_on_the_chunk(retrieval, umt_tiny_dir):
    model, _, text = retrieval
    inputs = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)
    whole = encode_texts(model, inputs["input_ids"], inputs["attention_mask"], batch_size=256)
    assert isinstance(whole, TextFeatures)
    assert torch.allclose(whole.embeds, text.embeds, atol=1e-6) and torch.allclose(whole.feat, text.feat, atol=1e-6)


def test_qa_ranking_over_batches(umt_tiny_dir):
    model = build_model(config_from_official(umt_tiny_dir / "config.json", task="qa"))
    load_checkpoint(model, umt_tiny_dir / "qa_checkpoint.pth")
    qa = torch.load(umt_tiny_dir / "qa_inputs.pt", weights_only=True)
    videos = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)["videos"][qa["video_index"]]
    qids = qa["question_ids"].tolist()

    def run(batch_size, k):
        batches = [QABatch(videos[s:s + batch_size], qa["question_input_ids"][s:s + batch_size],
                           qa["question_attention_mask"][s:s + batch_size], qids[s:s + batch_size])
                   for s in range(0, 6, batch_size)]
        return rank_all(model, batches, qa["answer_list"], qa["answer_input_ids"], qa["answer_attention_mask"], k=k)

    small, big = run(1, 10), run(4, 10)
    assert torch.equal(small.topk_ids, big.topk_ids) and torch.allclose(small.topk_probs, big.topk_probs, atol=1e-5)
    assert torch.allclose(big.topk_probs.sum(1), torch.ones(6), atol=1e-5)
    assert (big.topk_probs[:, :-1] >= big.topk_probs[:, 1:]).all()
    assert sorted(big.topk_ids[0].tolist()) == list(range(10))  # k = all answers: a permutation
    assert big.predictions == [qa["answer_list"][i] for i in big.topk_ids[:, 0].tolist()]
    assert big.records()[0] == {"question_id": qids[0], "answer": big.predictions[0]}
    assert big.token_counts == [64] * 5
    # With k=4 the candidates are the 4 most likely first pieces, re-ordered by the full score.
    # This is the official k_test = 4: candidates, their order and probabilities are the official ones.
    four = run(6, 4)
    official = torch.load(umt_tiny_dir / "qa_expected.pt", weights_only=True)["vidtldr_off"]
    assert torch.equal(four.topk_ids, official["topk_ids"].long())
    assert torch.allclose(four.topk_probs, official["topk_probs"].float(), atol=1e-4)
    assert four.predictions == list(official["pred_answers"])


def test_one_ranking_step_for_runner_rank_all_and_parity(umt_tiny_dir):
    """The evaluation runner and the parity check rank through the same function, on tokens that
    were encoded beforehand; it agrees with rank_all (which encodes first) and caps k."""
    from vidtldr.tasks import qa as qa_module
    from vidtldr.run import runner_qa
    from vidtldr.tasks.qa import rank_questions

    assert runner_qa.rank_questions is qa_module.rank_questions
    parity = (Path(__file__).resolve().parent.parent / "scripts" / "check_parity.py").read_text()
    assert "rank_questions(" in parity
    model = build_model(config_from_official(umt_tiny_dir / "config.json", task="qa"))
    load_checkpoint(model, umt_tiny_dir / "qa_checkpoint.pth")
    qa = torch.load(umt_tiny_dir / "qa_inputs.pt", weights_only=True)
    videos = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)["videos"][qa["video_index"]]
    with torch.no_grad():
        tokens = model.encode_vision(videos).tokens
    ids, probs = rank_questions(model, tokens, qa["question_input_ids"], qa["question_attention_mask"],
                                qa["answer_input_ids"], qa["answer_attention_mask"], k=1000)
    whole = rank_all(model, [QABatch(videos, qa["question_input_ids"], qa["question_attention_mask"])],
                     qa["answer_list"], qa["answer_input_ids"], qa["answer_attention_mask"], k=10)
    assert ids.shape == (6, 10) and torch.equal(ids, whole.topk_ids) and torch.allclose(probs, whole.topk_probs)
