"""Label-free fidelity: the agreement metrics (pure) and the fidelity command on the tiny model."""

import pytest
import torch

from vidtldr.analysis.agreement import (average_ranks, embedding_cosine, kendall_rows, mask_diagonal,
                                        ranking_agreement, spearman_rows, token_agreement, topk_overlap)


def test_identical_inputs_agree_perfectly():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=g)
    out = ranking_agreement(scores, scores.clone())
    assert out["itc_top1_agreement"] == 1.0 and out["itc_top5_overlap"] == 1.0
    assert out["itc_top10_overlap"] == 1.0
    assert out["spearman_mean"] == pytest.approx(1.0) and out["kendall_mean"] == pytest.approx(1.0)
    emb = torch.randn(5, 1, 7, generator=g)
    torch.testing.assert_close(embedding_cosine(emb, emb.clone()), torch.ones(5, dtype=torch.float64))
    tokens = torch.randn(10, 4, generator=g)
    assert token_agreement(tokens, tokens.clone(), None) == pytest.approx(1.0)


def test_reversed_ranking_by_hand():
    ref = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    red = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = ranking_agreement(ref, red, ks=(1, 2))
    assert out["itc_top1_agreement"] == 0.0 and out["itc_top2_overlap"] == 0.0
    assert out["spearman_mean"] == pytest.approx(-1.0) and out["kendall_mean"] == pytest.approx(-1.0)
    # one adjacent swap of 4 items: tau = (5 - 1) / 6, rho = 1 - 6 * 2 / (4 * 15)
    red = torch.tensor([[4.0, 2.0, 3.0, 1.0]])
    assert kendall_rows(ref, red).item() == pytest.approx(4 / 6)
    assert spearman_rows(ref, red).item() == pytest.approx(1 - 12 / 60)
    assert topk_overlap(ref, red, 2).item() == 0.5


def test_against_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (4, 12), generator=g).double()
    b = torch.randint(0, 5, (4, 12), generator=g).double()
    rho, tau = spearman_rows(a, b), kendall_rows(a, b)
    for i in range(4):
        assert rho[i].item() == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)
        assert tau[i].item() == pytest.approx(stats.kendalltau(a[i], b[i]).statistic, abs=1e-12)
        torch.testing.assert_close(average_ranks(a[i]), torch.tensor(stats.rankdata(a[i])))


def test_token_agreement_uses_provenance():
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    # reduced token 0 stands for ref 0 and 3 (mean [1.5, 0]), token 1 for ref 1, token 2 for ref 2
    source = torch.tensor([[1.0, 0, 0, 1.0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    red = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    assert token_agreement(ref, red, source) == pytest.approx(1.0)
    red_bad = torch.tensor([[0.0, 3.0], [0.0, 5.0], [1.0, 1.0]])  # the 2-token group is orthogonal
    # weights 2, 1, 1: (2 * 0 + 1 + 1) / 4
    assert token_agreement(ref, red_bad, source) == pytest.approx(0.5)


def test_mask_diagonal():
    s = torch.arange(9.0).view(3, 3)
    assert mask_diagonal(s).tolist() == [[1.0, 2.0], [3.0, 5.0], [6.0, 7.0]]


def test_agreement_drops_monotonically_with_noise():
    # A toy case built to degrade: the reduced scores are the reference plus growing noise.
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(40, 30, generator=g)
    noise = torch.randn(40, 30, generator=g)
    results = [ranking_agreement(ref, ref + eps * noise) for eps in (0.0, 0.3, 1.0, 3.0)]
    for key in ("itc_top5_overlap", "spearman_mean", "kendall_mean"):
        values = [r[key] for r in results]
        assert values[0] == pytest.approx(1.0)
        assert all(a > b for a, b in zip(values, values[1:])), (key, values)
