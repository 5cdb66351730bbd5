"""Label-free fidelity: the agreement metrics (pure) and the fidelity command on the tiny model."""

import pytest

from vidtldr.run.runner import ensure_tiny_data
import torch

from vidtldr.analysis.search.agreement import (average_ranks, embedding_cosine, kendall_rows, mask_diagonal,
                                        ranking_agreement, spearman_rows, token_agreement, topk_overlap)


def test_identical_inputs_agree_perfectly():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=g)
    out = ranking_agreement(scores, scores.clone())
    assert out["itc_top1_agreement"] == 1.0 and out["itc_top5_overlap"] == 1.0
    assert out["itc_top10_overlap"] is None  # k = 10 >= 9 items: not informative
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
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), (key, values)


# ----------------------------------------------------------------------------- on the tiny model

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from _eval_helpers import make_cfg  # noqa: E402
from conftest import ROOT  # noqa: E402

from vidtldr.analysis.search.fidelity import prepare, run_fidelity, summary  # noqa: E402
from vidtldr.errors import ConfigError, VideoError  # noqa: E402
from vidtldr.reduce import build_reducer  # noqa: E402


def _cfg(cache, *overrides):
    return make_cfg(cache, *overrides, config_name="fidelity")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity_cache")
    ensure_tiny_data(root, "msrvtt")  # the clips _folder copies, whichever test runs first
    return root


def test_merge_none_against_itself_is_perfect(cache, tmp_path):
    record = run_fidelity(_cfg(cache, "merge=none"), tmp_path)
    m = record["metrics"]
    assert m["embedding_cosine_mean"] == pytest.approx(1.0, abs=1e-12)
    assert m["itc_top1_agreement"] == 1.0 and m["itc_top5_overlap"] == 1.0
    assert m["spearman_mean"] == 1.0 and m["kendall_mean"] == 1.0
    assert m["token_agreement_mean"] == pytest.approx(1.0, abs=1e-12)
    assert m["rows"] == "text->video" and m["queries"] == 7 and m["gallery"] == 7
    assert m["itm_top1_agreement"] == 1.0 and m["itm_top4_overlap"] == 1.0  # tiny caps k_test at 4
    assert json.loads((tmp_path / "fidelity.json").read_text())["metrics"]["gflops_paper"] == m["gflops_paper"]
    line = summary(record)
    for key in ("gflops_paper", "embedding_cosine_mean", "itc_top1_agreement", "itc_top5_overlap", "spearman_mean"):
        assert key in line


def test_fidelity_drops_as_more_tokens_are_merged_and_reference_is_cached(cache):
    prepare(_cfg(cache, "merge=none"))  # computes (or finds) the unreduced features
    session = prepare(_cfg(cache, "merge=none"))
    assert session.cache["video"]["hits"] == 7 and session.cache["video"]["misses"] == 0  # computed once
    # Toy case built to degrade: random dropping at block 0 draws one noise per sample, so dropping
    # more removes a superset of the tokens (nested subsets), and less of the video is left.
    cosines, tokens = [], []
    for r in (0, 16, 48, 80, 98):
        m = session.measure(build_reducer("random", [r]))
        cosines.append(m["embedding_cosine_mean"])
        tokens.append(m["token_counts"][1])
    assert tokens == [196, 180, 148, 116, 98]
    assert cosines[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(cosines, cosines[1:], strict=False)), cosines


def test_reference_features_are_the_evaluations_merge_none_shards(cache, tmp_path):
    from vidtldr.run.runner import run

    fresh = tmp_path / "c"
    run(make_cfg(fresh, "merge=none"), tmp_path / "eval", progress=False)
    session = prepare(_cfg(fresh, "merge=none"))
    assert session.cache["video"]["hits"] == 7 and session.cache["video"]["writes"] == 0
    assert session.cache["text"]["hits"] == 1 and session.cache["text"]["writes"] == 0


def _folder(tmp_path, cache, broken: bool):
    src = cache / "tiny_data" / "msrvtt" / "videos" / "msrvtt"
    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in sorted(src.iterdir())[:3]:
        shutil.copy(clip, folder / clip.name)
    if broken:
        (folder / "sub").mkdir()
        (folder / "sub" / "broken.mp4").write_bytes(b"not a video at all")
    return folder


def test_video_folder_without_captions(cache, tmp_path):
    folder = _folder(tmp_path, cache, broken=False)
    record = run_fidelity(_cfg(cache, f"videos={folder}", "merge=tome", "merge.r=10"), tmp_path / "run")
    m = record["metrics"]
    assert record["videos"] == 3 and m["rows"] == "video->video" and m["gallery"] == 2
    assert m["itc_top5_overlap"] is None  # k >= gallery: not informative, not reported
    assert 0 < m["embedding_cosine_mean"] < 1 - 1e-6  # the reduction was applied: not the reference itself
    same = run_fidelity(_cfg(cache, f"videos={folder}", "merge=none"), tmp_path / "none")["metrics"]
    assert same["embedding_cosine_mean"] == pytest.approx(1.0, abs=1e-6)


def test_broken_video_is_an_error_or_skipped_and_recorded(cache, tmp_path):
    folder = _folder(tmp_path, cache, broken=True)
    with pytest.raises(VideoError, match="broken.mp4"):
        run_fidelity(_cfg(cache, f"videos={folder}"), tmp_path / "a")
    record = run_fidelity(_cfg(cache, f"videos={folder}", "data.on_error=skip"), tmp_path / "b")
    assert record["videos"] == 3
    assert [Path(s["path"]).name for s in record["skipped_videos"]] == ["broken.mp4"]
    assert summary(record)["skipped"] == 1


def test_bad_inputs_are_clear_errors(cache, tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        run_fidelity(_cfg(cache, f"videos={tmp_path / 'nope'}"), tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no video files"):
        run_fidelity(_cfg(cache, f"videos={tmp_path / 'empty'}"), tmp_path / "b")


@pytest.mark.slow
def test_command_line_last_line_is_json(cache, tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "vidtldr.fidelity", f"paths.cache={cache}",
                          f"hydra.run.dir={tmp_path}", "print_table=false"], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["merge"] == "vidtldr" and line["merge_r"] == [48, 24, 0, 0]
    assert 0 < line["embedding_cosine_mean"] <= 1 and (tmp_path / "fidelity.json").is_file()
    assert 0 <= line["itm_top1_agreement"] <= 1 and 0 <= line["itm_top4_overlap"] <= 1
    bad = subprocess.run([sys.executable, "-m", "vidtldr.fidelity", f"paths.cache={cache}", f"hydra.run.dir={tmp_path}",
                          f"videos={tmp_path / 'missing'}"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "vidtldr.fidelity: error: videos=" in bad.stderr
