"""End-to-end runs of the evaluation runner on the tiny model and generated tiny clips:
record contents, tables built from records, cache hits, resume after interruption, wandb offline."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vidtldr.data.dataset as data_module
import vidtldr.tasks.retrieval as retrieval_module
from vidtldr.cost.text import qa_cost, text_dims
from vidtldr.models.config import load_architecture
from vidtldr.report import reference, results, rows, tables
from vidtldr.errors import VideoError
from vidtldr.run.runner import run

from _eval_helpers import make_cfg, read, stable_view

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture(scope="module")
def baseline(cache, tmp_path_factory):
    """One clean vid-TLDR retrieval run on tiny MSRVTT (shared by several tests)."""
    run_dir = tmp_path_factory.mktemp("baseline") / "run"  # its parent holds this record only
    record = run(make_cfg(cache, "data.batch_size=2"), run_dir, progress=False)
    return run_dir, record


def test_retrieval_record_and_tables(baseline, tmp_path):
    run_dir, record = baseline
    assert read(run_dir) == json.loads(json.dumps(record, default=str))  # what was returned is what was written
    assert record["status"] == "complete" and record["partial"] is False
    assert record["run"] == {"task": "retrieval", "dataset": "msrvtt", "dataset_base": "msrvtt", "setting": "finetuned",
                             "paper_row": True,
                             "model": "tiny", "backbone": "tiny", "merge": "vidtldr", "schedule": [48, 24, 0, 0],
                             "schedule_spec": "published", "data_source": "tiny"}
    assert "random weights" in record["note"]
    # 4 frames x 49 patches; the tiny schedule removes 48 then 24 tokens.
    assert record["token_counts"] == [196, 148, 124, 124, 124]
    assert record["counts"]["videos"] == 7 and record["counts"]["texts"] == 7
    assert record["counts"]["k_test_effective"] == {"v2t": 4, "t2v": 4}
    assert record["checksums"]["checkpoint"] is None
    annotation = record["checksums"]["annotation"]
    assert annotation["sha256"] == hashlib.sha256(Path(annotation["path"]).read_bytes()).hexdigest()
    assert Path(annotation["path"]).name == "msrvtt_ret_test1k.json"
    assert record["git"]["commit"] and record["versions"]["torch"]
    for key in ("setup_s", "video_features_s", "text_features_s", "itc_s", "itm_s", "total_s"):
        assert record["timings"][key] >= 0
    g = record["gflops"]
    # counted by hand in tests/test_flops.py (TINY_*): paper 97_304_128 without merging and
    # 78_292_032 with r = [48, 24]; true FLOPs 198_321_088 and 159_673_368; rounded to 3 places
    assert (g["base_paper"], g["paper"], g["base_true"], g["true"]) == (0.097, 0.078, 0.198, 0.160)
    assert g["reduction_pct"] == 19.54  # 100 x (1 - 78_292_032 / 97_304_128) = 19.539
    assert g["tokens_per_layer_counted"] == record["token_counts"] and "warning" not in g
    # Both metric blocks, with exactly these keys (their values: test_record_metrics_are_those_of_the_score_matrices).
    keys = {f"{side}_{m}" for side in ("img", "txt") for m in ("r1", "r5", "r10", "r_mean", "medr", "meanr")}
    assert set(record["metrics"]) == {"itm", "itc"}
    assert set(record["metrics"]["itm"]) == set(record["metrics"]["itc"]) == keys | {"r_mean"}

    out = tmp_path / "tables"
    written = results.build_all([run_dir.parent], out)
    with (out / "runs.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))  # one run, one row
    assert (row["dataset_config"], row["model"], row["method"], row["precision"]) == ("msrvtt", "tiny", "vidtldr", "fp32")
    # each cell is its record value under our column name: img = text->video, txt = video->text
    itm, itc = record["metrics"]["itm"], record["metrics"]["itc"]
    for col, want in (("t2v_r1", itm["img_r1"]), ("v2t_r1", itm["txt_r1"]),
                      ("r1_mean", round((itm["img_r1"] + itm["txt_r1"]) / 2, 2)),
                      ("itc_t2v_r1", itc["img_r1"]), ("itc_v2t_r1", itc["txt_r1"]),
                      ("gflops", 0.078), ("videos", 7), ("videos_total", 7), ("num_frames", 4), ("k_test", 4)):
        assert float(row[col]) == want, col
    # A tiny-model run never fills a paper row: every row of the paper tables says "not run".
    for name in ("finetuned", "zeroshot", "qa", "fig1"):
        table = tables.build_table(tables.TABLES[name], rows.load_runs([run_dir.parent]),
                                    reference.load_reference())
        assert set(table["run"]) == {tables.NOT_RUN}
        assert written[name]["md"].read_text().count("not run") >= len(table)


def _rank_bounds(row: list[float], truths: list[int]) -> tuple[int, int]:
    """Best and worst 0-based rank of a query's best ground truth, whatever order ties take:
    (candidates scoring strictly higher, candidates scoring at least as high minus one)."""
    best = min(sum(s > row[g] for s in row) for g in truths)
    worst = min(sum(s >= row[g] for s in row) - 1 for g in truths)
    return best, worst


def _recall_bounds(matrix, truth) -> dict:
    """{k: (lowest, highest) R@k in percent} over every tie order, counted by hand."""
    bounds = [_rank_bounds(matrix[q].tolist(), truth[q]) for q in range(len(truth))]
    n = len(bounds)
    return {k: (round(100 * sum(w < k for _, w in bounds) / n, 2), round(100 * sum(b < k for b, _ in bounds) / n, 2))
            for k in (1, 5, 10)}


@pytest.mark.parametrize("engine", ["grouped", "pairwise"])
def test_record_metrics_are_those_of_the_score_matrices(baseline, cache, tmp_path, monkeypatch, engine):
    """The recorded metrics are the ranks of the ground truth in the runner's own score matrices,
    and those matrices hold ITM logits exactly for the ITC top-k_test candidates (-100 elsewhere),
    whichever ITM engine filled them. The ranks are counted here from scratch (no call to the
    metrics module), with the ground truth read from the annotation file itself."""
    import torch

    import vidtldr.run.runner_retrieval as runner_retrieval

    seen = {}
    real = runner_retrieval.rerank

    def spy(*args, **kwargs):
        seen["scores"] = real(*args, **kwargs)
        seen["engine"] = kwargs["engine"]
        return seen["scores"]

    monkeypatch.setattr(runner_retrieval, "rerank", spy)
    record = run(make_cfg(cache, "data.batch_size=2", f"eval.itm_engine={engine}"), tmp_path / "run",
                 progress=False)  # features from the cache
    assert record["metrics"] == baseline[1]["metrics"]
    scores = seen["scores"]
    assert seen["engine"] == engine and scores.stats.engine == engine
    k = record["resolved"]["k_test"]
    assert k == 4 and scores.i2t.shape == (7, 7)
    for itc, itm, topk in ((scores.i2t_emb, scores.i2t, scores.i2t_topk), (scores.t2i_emb, scores.t2i, scores.t2i_topk)):
        for row in range(itc.shape[0]):
            top = set(itc[row].topk(k).indices.tolist())
            assert set(topk[row].tolist()) == top
            assert set(torch.nonzero(itm[row] != -100.0).flatten().tolist()) == top  # ITM logits exactly there
    # Ground truth from the annotation JSON: one caption per clip, in file order (tiny MSRVTT).
    entries = json.loads((cache / "tiny_data" / "msrvtt" / "anno_downstream" / "msrvtt_ret_test1k.json").read_text())
    assert len(entries) == 7 and all(isinstance(e["caption"], str) for e in entries)
    videos = [e["video"] for e in entries]
    assert len(set(videos)) == 7
    t2v_truth = [[j] for j in range(7)]  # text j describes video j
    v2t_truth = [[j] for j in range(7)]
    for block, (i2t, t2i) in (("itc", (scores.i2t_emb, scores.t2i_emb)), ("itm", (scores.i2t, scores.t2i))):
        got = record["metrics"][block]
        for side, matrix, truth in (("img", t2i, t2v_truth), ("txt", i2t, v2t_truth)):
            for r, (low, high) in _recall_bounds(matrix, truth).items():
                assert low <= got[f"{side}_r{r}"] <= high, (block, side, r)
                if block == "itc":  # cosine similarities have no ties: one exact value
                    assert got[f"{side}_r{r}"] == low == high, (block, side, r)
        mean = (got["img_r1"] + got["img_r5"] + got["img_r10"] + got["txt_r1"] + got["txt_r5"] + got["txt_r10"]) / 6
        assert got["r_mean"] == pytest.approx(mean, abs=0.011)  # a mean of values rounded to 2 decimals
    # ITM R@1 is tie free as long as every text's best candidate is a re-ranked one (it is: k >= 1).
    t2v_hits = [int(scores.t2i[j].argmax()) == j for j in range(7)]
    assert record["metrics"]["itm"]["img_r1"] == round(100 * sum(t2v_hits) / 7, 2)


def test_qa_record_predictions_and_accuracy(cache, tmp_path):
    record = run(make_cfg(cache, "dataset=msrvtt_qa"), tmp_path, progress=False)
    assert record["run"]["task"] == "qa" and record["status"] == "complete"
    assert record["counts"]["questions"] == 7 and record["counts"]["videos"] == 6  # one clip has 2 questions
    assert record["counts"]["videos_decoded"] == 6  # one encoding per distinct clip
    answer_file = cache / "tiny_data" / "msrvtt_qa" / "anno_downstream" / "msrvtt_qa_answer_list.json"
    assert record["checksums"]["answer_list"]["sha256"] == hashlib.sha256(answer_file.read_bytes()).hexdigest()
    preds = json.loads((tmp_path / "predictions.json").read_text())
    root = cache / "tiny_data" / "msrvtt_qa" / "anno_downstream"
    gold = {r["question_id"]: r["answer"] for r in json.loads((root / "msrvtt_qa_test.json").read_text())}
    answers = json.loads((root / "msrvtt_qa_answer_list.json").read_text())
    assert sorted(p["question_id"] for p in preds) == sorted(gold)
    assert all(p["answer"] in answers for p in preds)
    expected = round(100 * sum(gold[p["question_id"]] == p["answer"] for p in preds) / len(gold), 2)
    assert record["metrics"] == {"acc": expected}
    # whole-evaluation cost: 6 clips encoded; the grouped engine projects each clip's keys/values once
    # (7 questions, all in one window), the official execution once per question
    cost = record["cost"]
    assert cost["itm_engine"] == "grouped" and cost["kv_projections"] == 6
    # per clip, the tiny encoder with r = [48, 24] less the retrieval model's pool norm (5 x 64):
    # 78_292_032 - 320 = 78_291_712 (tests/test_flops.py); 6 clips = 469_750_272
    assert record["gflops"]["paper"] == 0.078 and cost["gflops"]["vision_encoder"]["paper"] == 0.470
    # per question the official execution, as counted by vidtldr.cost.text.qa_cost (checked against
    # fvcore's trace in tests/test_flops.py): 25 question tokens, cross-attention to the 124 vision
    # tokens, the first-token pass, then k = min(k_test 4, 10 answers) answers of 5 tokens re-scored
    assert record["resolved"]["k_test"] == 4
    one = qa_cost(text_dims(load_architecture("tiny", task="qa")), 124, k_test=4, max_q_len=25, max_a_len=5)
    assert cost["gflops"]["answering_pairwise"]["paper"] == round(7 * one.paper_total / 1e9, 3)
    # one projection fewer: 2 fusion layers x K, V of 124 tokens (124 x 64 x 128 MACs) = 2_031_616
    saved = cost["gflops"]["answering_pairwise"]["paper"] - cost["gflops"]["answering"]["paper"]
    assert saved == pytest.approx(2_031_616 / 1e9, abs=1e-3)  # a difference of values rounded to 3 places
    pairwise = run(make_cfg(cache, "dataset=msrvtt_qa", "eval.itm_engine=pairwise"), tmp_path / "pw", progress=False)
    assert pairwise["cost"]["kv_projections"] == 7 and pairwise["metrics"] == record["metrics"]
    assert pairwise["cost"]["gflops"]["answering"] == cost["gflops"]["answering_pairwise"]


def test_qa_cost_under_data_limit_counts_only_the_questions_evaluated(cache, tmp_path):
    # the feature cache off: the module's other QA tests count the clips they decode into it
    record = run(make_cfg(cache, "dataset=msrvtt_qa", "data.limit=3", "cache.enabled=false"), tmp_path, progress=False)
    annotation = cache / "tiny_data" / "msrvtt_qa" / "anno_downstream" / "msrvtt_qa_test.json"
    first = json.loads(annotation.read_text())[:3]
    assert len({q["video"] for q in first}) == 2  # questions 0 and 1 are about one clip, 2 about another
    assert (record["counts"]["questions"], record["counts"]["questions_total"]) == (3, 7)
    assert record["partial"] is True
    cost = record["cost"]["gflops"]
    # 2 clips of 78_291_712 MACs (tests/test_flops.py, less the retrieval pool norm) = 156_583_424;
    # 3 questions of the official execution (vidtldr.cost.text.qa_cost, as in the test above)
    one = qa_cost(text_dims(load_architecture("tiny", task="qa")), 124, k_test=4, max_q_len=25, max_a_len=5)
    assert cost["vision_encoder"]["paper"] == 0.157
    assert cost["answering_pairwise"]["paper"] == round(3 * one.paper_total / 1e9, 3) == 0.034  # 3 x 11_270_208
    # grouped: 2 key/value projections instead of 3, one of 2_031_616 MACs saved
    assert record["cost"]["kv_projections"] == 2
    assert cost["answering_pairwise"]["paper"] - cost["answering"]["paper"] == pytest.approx(2_031_616 / 1e9, abs=1e-3)
    assert cost["total"]["paper"] == pytest.approx(0.157 + cost["answering"]["paper"], abs=1e-9)
    pairwise = run(make_cfg(cache, "dataset=msrvtt_qa", "data.limit=3", "cache.enabled=false", "eval.itm_engine=pairwise"),
                   tmp_path / "pw", progress=False)
    assert pairwise["cost"]["kv_projections"] == 3
    assert pairwise["cost"]["gflops"]["answering"] == cost["answering_pairwise"]


def test_rerun_hits_cache_and_decodes_nothing(baseline, cache, tmp_path, monkeypatch):
    _, first = baseline

    def no_decoding(*args, **kwargs):
        raise AssertionError("a video was decoded although its features are cached")

    monkeypatch.setattr(data_module, "read_frames", no_decoding)
    again = run(make_cfg(cache, "data.batch_size=2"), tmp_path / "again", progress=False)
    assert again["counts"]["videos_decoded"] == 0 and again["counts"]["videos_from_cache"] == 7
    assert again["cache"]["video"]["hits"] == 7 and again["cache"]["text"]["hits"] == 1
    assert stable_view(again) == stable_view(first)
    # k_test is not part of the feature key: a different re-ranking depth still decodes nothing.
    deeper = run(make_cfg(cache, "eval.k_test=2"), tmp_path / "k2", progress=False)
    assert deeper["counts"]["videos_decoded"] == 0
    assert deeper["counts"]["k_test_effective"] == {"v2t": 2, "t2v": 2}
    # A different schedule changes the features: the feature cache must miss and decoding is attempted,
    # unless the frame cache holds the decoded frames (cache.frames=false: it is not asked).
    with pytest.raises(AssertionError, match="decoded"):
        run(make_cfg(cache, "merge.r=[40]", "cache.frames=false"), tmp_path / "other", progress=False)


def test_second_schedule_reads_the_frames_the_first_decoded(baseline, cache, tmp_path, monkeypatch):
    real = data_module.read_frames
    calls = []

    def counted(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(data_module, "read_frames", counted)
    served = run(make_cfg(cache, "merge.r=[30]", "data.num_workers=0"), tmp_path / "served", progress=False)
    assert calls == []  # the baseline run decoded these videos: nothing decoded for a new schedule
    assert served["counts"]["videos_decoded"] == 7 and served["cache"]["frames"]["served"] == 7
    assert served["cache"]["frames"]["decoded"] == 0
    # The same schedule decoding every video (no frame cache, fresh feature cache): the same record.
    decoding = run(make_cfg(cache, "merge.r=[30]", "data.num_workers=0", "cache.frames=false",
                            f"cache.dir={tmp_path / 'features'}"), tmp_path / "decoding", progress=False)
    assert len(calls) == 7 and decoding["cache"]["frames"] == {
        "enabled": False, "served": 0, "decoded": 7, "decoder": "decord", "num_workers": 0}
    assert stable_view(decoding) == stable_view(served)


def test_resume_after_interruption_gives_same_record(baseline, tmp_path, monkeypatch):
    _, clean = baseline
    cache = tmp_path / "fresh_cache"  # nothing cached yet
    real = retrieval_module.encode_videos
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(retrieval_module, "encode_videos", interrupted)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(cache, "data.batch_size=2"), run_dir, progress=False)
    assert read(run_dir)["status"] == "interrupted"
    shards = [p for p in (cache / "features").rglob("*.pt")]
    assert len(shards) == 2  # the first batch (2 videos) survived; the batch in flight is lost
    assert not list((cache / "features").rglob("*.tmp"))

    monkeypatch.setattr(retrieval_module, "encode_videos", real)
    resumed = run(make_cfg(cache, "data.batch_size=2"), run_dir, progress=False)
    assert resumed["status"] == "complete"
    assert resumed["counts"]["videos_from_cache"] == 2 and resumed["counts"]["videos_decoded"] == 5
    assert stable_view(read(run_dir)) == stable_view(clean)


def test_limit_marks_run_partial(cache, tmp_path):
    record = run(make_cfg(cache, "data.limit=3"), tmp_path, progress=False)
    assert record["partial"] is True and record["partial_reason"] == "data.limit"
    assert record["counts"]["videos"] == 3 and record["counts"]["videos_total"] == 7
    row = rows.run_row(record)
    assert row["partial"] and row["videos"] == 3


def test_unreadable_video_is_skipped_or_raises(cache, tmp_path):
    import shutil

    src = cache / "tiny_data" / "msrvtt"
    if not src.exists():
        run(make_cfg(cache, "data.limit=1"), tmp_path / "gen", progress=False)
    data = tmp_path / "data"
    shutil.copytree(src, data)
    (data / "videos" / "msrvtt" / "v3_36f_12fps_80x60.mp4").write_bytes(b"not a video")
    common = (f"paths.data={data}", "data.source=real", "cache.enabled=false")
    with pytest.raises(VideoError, match="v3_36f"):
        run(make_cfg(cache, *common), tmp_path / "raise", progress=False)
    record = run(make_cfg(cache, *common, "data.on_error=skip"), tmp_path / "skip", progress=False)
    assert [s["path"].endswith("v3_36f_12fps_80x60.mp4") for s in record["skipped_videos"]] == [True]
    assert record["partial"] is True and record["counts"]["videos"] == 6 and record["counts"]["texts"] == 6
    counts = record["counts"]
    assert (counts["videos_total"], counts["videos_skipped"], counts["distinct_video_files"]) == (7, 1, 6)


def test_wandb_offline_run_directory(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    record = run(make_cfg(cache, "logger.wandb.enabled=true", "logger.wandb.mode=offline"), tmp_path,
                 progress=False)
    assert record["wandb"]["mode"] == "offline"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the offline run holds no .wandb log"


def test_cli_default_prints_table(cache, tmp_path):
    """`python -m vidtldr.eval` with only a run dir: the embedded default, as `make demo` runs it."""
    env = {**os.environ, "VIDTLDR_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ITM re-ranked" in proc.stdout and "random weights" in proc.stdout
    record = read(tmp_path)
    assert record["run"]["dataset"] == "msrvtt" and record["run"]["merge"] == "vidtldr"


def test_cli_missing_inputs_one_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", "model=umt_b", "dataset=msvd_qa",
                           f"hydra.run.dir={tmp_path}", f"paths.data={tmp_path / 'nodata'}",
                           f"paths.checkpoints={tmp_path / 'nockpt'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    err = proc.stderr
    assert "Traceback" not in err
    for piece in ("qa_msvd_b16_25m.pth", "msvd_qa_test.json", "msvd_qa_answer_list.json", "videos/msvd",
                  "pjlab-gvm-data"):
        assert piece in err


def test_checkpoint_path_recorded_and_equivalent_to_its_weights(baseline, cache, tmp_path):
    """Saving the tiny model's seeded weights as an official-style checkpoint and loading them
    (with a different seed for the random init) reproduces the random-init run; the record carries
    the checkpoint's checksum, and the feature cache is keyed by it."""
    import torch

    from vidtldr.models.umt import build_model

    _, first = baseline
    torch.manual_seed(0)
    model = build_model(load_architecture("tiny", task="retrieval", num_frames=4))
    ckpt = tmp_path / "tiny_seed0.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    record = run(make_cfg(cache, "data.batch_size=2", "model.init=checkpoint", "model.seed=1",
                          f"model.checkpoint={ckpt}"), tmp_path / "run", progress=False)
    entry = record["checksums"]["checkpoint"]
    assert entry["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() and entry["path"] == str(ckpt)
    assert record["resolved"]["checkpoint_kind"] == "finetuned" and "note" not in record
    assert record["counts"]["videos_decoded"] == 7  # different weights id: no cache reuse
    assert record["metrics"] == first["metrics"] and record["token_counts"] == first["token_counts"]


def test_bf16_autocast_run_has_its_own_cache_entry(baseline, cache, tmp_path):
    record = run(make_cfg(cache, "precision=bf16"), tmp_path, progress=False)
    assert record["status"] == "complete" and record["resolved"]["precision"] == "bf16"
    assert record["counts"]["videos_decoded"] == 7  # fp32 features are not reused for bf16
    assert record["token_counts"] == baseline[1]["token_counts"]


def test_tokenizer_vocabulary_must_match_the_model(cache, tmp_path):
    from vidtldr.errors import ConfigError
    from vidtldr.models.tokenizer import packaged_vocab_path

    words = Path(str(packaged_vocab_path())).read_text().splitlines()
    assert len(words) == 210  # the tiny model's vocab_size
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words + ["extraword"]) + "\n")  # a valid vocabulary, one entry too many
    with pytest.raises(ConfigError) as info:
        run(make_cfg(cache, f"model.tokenizer={vocab}"), tmp_path / "run", progress=False)
    msg = str(info.value)
    assert str(vocab) in msg and "211" in msg and "210" in msg


@pytest.mark.parametrize("merge", ["vidtldr", "tome", "random"])
def test_one_fraction_reduces_every_block(cache, tmp_path, merge):
    """merge.r=0.1 removes int(0.1 * T) of the current T tokens at each of the 4 blocks (by hand:
    196 -> 177 -> 160 -> 144 -> 130), in the run and in its GFLOPs count."""
    record = run(make_cfg(cache, f"merge={merge}", "merge.r=0.1"), tmp_path, progress=False)
    assert record["run"]["schedule"] == [0.1, 0.1, 0.1, 0.1]
    assert record["token_counts"] == [196, 177, 160, 144, 130]
    assert record["gflops"]["tokens_per_layer_counted"] == [196, 177, 160, 144, 130]
