"""QA run: videos -> vision tokens (cached, one encoding per distinct video) -> answer-list ranking
(the model's ``rank_answers``; docs/protocol.md section 5) -> exact-match accuracy (:func:`vidtldr.tasks.metrics.qa_accuracy`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from vidtldr.run import distributed as D
from vidtldr.run.cache import FeatureCache
from vidtldr.data.annotations import QASplit
from vidtldr.tasks.metrics import qa_accuracy
from vidtldr.models.precision import model_device
from vidtldr.models.tokenizer import tokenize, tokenize_answers
from vidtldr.tasks.qa import question_states_grouped, rank_from_states, rank_questions
from vidtldr.run.frame_cache import frame_cache_from
from vidtldr.run.runner_features import (all_ranks_outcome, exchange_cache, first_path_of, frames_entry, load_shared_shard, stack,
                                         token_counts_by_video, token_counts_of, unique_in_order, video_features)
from vidtldr.run.runner_subset import subset_qa
from vidtldr.run.settings import RunSettings
from vidtldr.run.task_run import TaskJob, register_runner
from vidtldr.tasks.base import TaskResult

log = logging.getLogger(__name__)

# Questions whose question-encoder states the grouped engine computes together (rounded up to whole
# batches): consecutive questions about one video share its keys/values within a window.
QA_WINDOW = 64


@register_runner("qa")
def run_qa_job(job: TaskJob) -> TaskResult:
    return run_qa(job.model, job.tokenizer, job.reducer, job.split, spec=job.spec, video_cache=job.video_cache,
                  img_size=job.img_size, settings=job.settings, progress=job.progress, dist_ctx=job.dist_ctx,
                  scratch=job.scratch)


def run_qa(model, tokenizer, reducer, split: QASplit, *, spec, video_cache: FeatureCache, img_size: int,
           settings: RunSettings, progress: bool = True, dist_ctx: D.DistContext = D.SINGLE,
           scratch: Path | None = None) -> TaskResult:
    """Under ``torch.distributed`` the ranks split the videos to encode and then the questions to
    answer; predictions are gathered so that every rank returns the full result."""
    timings: dict[str, float] = {}
    engine = settings.itm_engine
    total = len(split.questions)
    total_videos = len(set(split.video_names))
    if spec.limit is not None and spec.limit < total:
        split = subset_qa(split, range(spec.limit))
        log.info("data.limit=%d: %d of %d questions", spec.limit, len(split.questions), total)
    device = model_device(model)

    vision_s = [0.0]  # model time inside the video stage (the rest is decoding and cache I/O)

    @torch.no_grad()
    def encode(frames: torch.Tensor) -> list[dict]:
        begin = time.perf_counter()
        out = model.encode_vision(frames.to(device), reducer=reducer)
        tokens = out.tokens.float().cpu()
        vision_s[0] += time.perf_counter() - begin
        counts = torch.tensor(out.token_counts, dtype=torch.long)
        # clone: a contiguous() row would still save the whole batch's storage into each shard
        return [{"tokens": tokens[i].clone(), "token_counts": counts} for i in range(tokens.shape[0])]

    shared = exchange_cache(video_cache, scratch, needed=dist_ctx.enabled)
    start = time.perf_counter()
    order = unique_in_order(split.video_names)
    path_of = first_path_of(split.video_names, split.videos)
    shared.bind_sources(path_of)  # shards are valid for the file they were computed from
    mine = D.shard(order, dist_ctx)
    frame_cache = frame_cache_from(settings)
    videos = video_features([path_of[k] for k in mine], mine, encode, shared, num_frames=spec.num_frames,
                            trimmed30=spec.trimmed30, size=img_size, batch_size=settings.batch_size,
                            num_workers=settings.num_workers, skip_unreadable=settings.skip_unreadable,
                            progress=progress, decoder=settings.decoder, frame_cache=frame_cache)
    skipped, decoded, cached = all_ranks_outcome(videos, dist_ctx)
    timings["video_features_s"] = time.perf_counter() - start
    if skipped:
        bad = {s.path for s in skipped}
        split = subset_qa(split, [i for i, p in enumerate(split.videos) if p not in bad])
    questions_mine = D.shard(range(len(split.questions)), dist_ctx)
    if dist_ctx.enabled:  # this rank's questions' videos, read from the shared shards
        for key in unique_in_order([split.video_names[i] for i in questions_mine]):
            if key not in videos.by_key:
                videos.by_key[key] = load_shared_shard(shared, key)

    start = time.perf_counter()
    answers = tokenize_answers(tokenizer, split.answer_list, spec.max_a_len)
    questions = tokenize(tokenizer, split.questions, spec.max_q_len)
    k = min(spec.k_test, len(split.answer_list))
    predictions, kv_projections = _answer_questions(model, engine, split, videos, questions, answers, k,
                                                    settings.batch_size, questions_mine, progress)
    if dist_ctx.enabled:  # contiguous shares in rank order: merging keeps the question order
        merged: dict = {}
        shares = D.all_gather_objects((predictions, kv_projections), dist_ctx)
        for share, _ in shares:
            merged.update(share)
        predictions, kv_projections = merged, sum(n for _, n in shares)
    timings["answer_ranking_s"] = time.perf_counter() - start
    gold = dict(zip(split.question_ids, split.answers, strict=True))
    metrics = {"acc": qa_accuracy(predictions, gold)}
    counts = {"questions": len(split.questions), "questions_total": total, "videos": len(set(split.video_names)),
              "videos_total": total_videos, "videos_skipped": len(skipped), "videos_decoded": decoded,
              "videos_from_cache": cached, "answers": len(split.answer_list), "k_effective": k}
    seconds = {"decode": timings["video_features_s"] - vision_s[0], "vision": vision_s[0],
               "answer_ranking": timings["answer_ranking_s"]}
    cost = {"itm_engine": engine,
            "gflops": _evaluation_gflops(model, reducer, spec, counts["videos"], counts["questions"], k, kv_projections),
            "kv_projections": kv_projections, "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "note": "grouped: the questions about one video (within windows of consecutive questions) are "
                    "encoded against its cross-attention keys/values projected once (kv_projections counts "
                    "them; the official execution projects them once per question). gflops.paper: one "
                    "multiply-add = 1 (fvcore, as the paper); gflops.true: all flops; every video counted "
                    "as encoded, cache or not."}
    return TaskResult(metrics=metrics, counts=counts, token_counts=token_counts_of(videos), timings=timings,
                      video_token_counts=token_counts_by_video(videos),
                      skipped=[{"path": s.path, "reason": s.reason} for s in skipped],
                      cache={"video": video_cache.stats(), "frames": frames_entry(videos, frame_cache, settings, dist_ctx)},
                      extra={"predictions": [{"question_id": q, "answer": a} for q, a in predictions.items()],
                             "cost": cost})


def _evaluation_gflops(model, reducer, spec, videos: int, questions: int, k: int, kv_projections: int) -> dict:
    from vidtldr.cost.itm import qa_evaluation_cost
    from vidtldr.cost.text import text_dims
    from vidtldr.cost.vision import reducer_cost, vision_dims

    vision = reducer_cost(vision_dims(model.cfg), spec.num_frames, reducer)
    return qa_evaluation_cost(text_dims(model.cfg), vision_per_video=(vision.paper, vision.true),
                              videos=videos, questions=questions,
                              vision_tokens=vision.tokens_per_layer[-1], k=k, max_q_len=spec.max_q_len,
                              max_a_len=spec.max_a_len, kv_projections=kv_projections)


def _answer_questions(model, engine: str, split: QASplit, videos, questions, answers, k: int, batch: int,
                      questions_mine: Sequence[int], progress: bool) -> tuple[dict, int]:
    """This rank's predictions ``{question_id: answer}``, ranked in batches of ``batch`` questions, and
    how many times a video's cross-attention keys/values were projected. grouped: the questions of a
    window are encoded per video (its keys/values projected once); the answer ranking still runs in
    the same batches as the pairwise execution."""
    predictions: dict = {}
    kv_projections = 0
    first, end = (questions_mine[0], questions_mine[-1] + 1) if questions_mine else (0, 0)
    window = batch * max(1, -(-QA_WINDOW // batch)) if engine == "grouped" else batch
    with torch.no_grad(), tqdm(total=end - first, desc="answer ranking", unit="question",
                               disable=not progress, leave=False) as bar:
        for w_lo in range(first, end, window):
            w_hi = min(w_lo + window, end)
            states = None
            kv_projections += len(set(split.video_names[w_lo:w_hi])) if engine == "grouped" else w_hi - w_lo
            if engine == "grouped":
                states = question_states_grouped(
                    model, lambda key: videos.by_key[key]["tokens"], split.video_names[w_lo:w_hi],
                    questions.input_ids[w_lo:w_hi], questions.attention_mask[w_lo:w_hi])
            for lo in range(w_lo, w_hi, batch):
                hi = min(lo + batch, w_hi)
                q_ids, q_mask = questions.input_ids[lo:hi], questions.attention_mask[lo:hi]
                if states is None:
                    tokens = stack(videos, split.video_names[lo:hi], "tokens")
                    topk_ids, _ = rank_questions(model, tokens, q_ids, q_mask, answers.input_ids,
                                                 answers.attention_mask, k)
                else:
                    topk_ids, _ = rank_from_states(model, states[lo - w_lo:hi - w_lo], q_mask, answers.input_ids,
                                                   answers.attention_mask, k)
                for qid, row in zip(split.question_ids[lo:hi], topk_ids, strict=True):
                    predictions[qid] = split.answer_list[int(row[0])]
                bar.update(hi - lo)
    return predictions, kv_projections
