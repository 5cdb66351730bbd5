"""QA run: videos -> vision tokens (cached, one encoding per distinct video) -> answer-list ranking
(the model's ``rank_answers``, spec §7) -> exact-match accuracy (:func:`vidtldr.metrics.qa_accuracy`)."""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from vidtldr.cache import FeatureCache
from vidtldr.data.annotations import QASplit
from vidtldr.metrics import qa_accuracy
from vidtldr.models.tokenizer import tokenize, tokenize_answers
from vidtldr.tasks.runner_features import stack, token_counts_of, video_features
from vidtldr.tasks.runner_retrieval import TaskResult
from vidtldr.tasks.runner_subset import subset_qa

log = logging.getLogger(__name__)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def run_qa(model, tokenizer, reducer, split: QASplit, *, spec, video_cache: FeatureCache, img_size: int,
           settings: dict, progress: bool = True) -> TaskResult:
    timings: dict[str, float] = {}
    total = len(split.questions)
    total_videos = len(set(split.video_names))
    if spec.limit is not None and spec.limit < total:
        split = subset_qa(split, range(spec.limit))
        log.info("data.limit=%d: %d of %d questions", spec.limit, len(split.questions), total)
    device = _device(model)

    @torch.no_grad()
    def encode(frames: torch.Tensor) -> list[dict]:
        out = model.encode_vision(frames.to(device), reducer=reducer)
        tokens = out.tokens.float().cpu()
        counts = torch.tensor(out.token_counts, dtype=torch.long)
        return [{"tokens": tokens[i].contiguous(), "token_counts": counts} for i in range(tokens.shape[0])]

    start = time.perf_counter()
    videos = video_features(split.videos, split.video_names, encode, video_cache, num_frames=spec.num_frames,
                            trimmed30=False, size=img_size, batch_size=settings["batch_size"],
                            num_workers=settings["num_workers"], skip_unreadable=settings["skip_unreadable"],
                            progress=progress)
    timings["video_features_s"] = time.perf_counter() - start
    if videos.skipped:
        bad = {s.path for s in videos.skipped}
        split = subset_qa(split, [i for i, p in enumerate(split.videos) if p not in bad])

    start = time.perf_counter()
    answers = tokenize_answers(tokenizer, split.answer_list, spec.max_a_len)
    questions = tokenize(tokenizer, split.questions, spec.max_q_len)
    k = min(spec.k_test, len(split.answer_list))
    predictions: dict = {}
    batch = settings["batch_size"]
    with torch.no_grad(), tqdm(total=len(split.questions), desc="answer ranking", unit="question",
                               disable=not progress, leave=False) as bar:
        for lo in range(0, len(split.questions), batch):
            hi = min(lo + batch, len(split.questions))
            tokens = stack(videos, split.video_names[lo:hi], "tokens").to(device)
            topk_ids, _ = model.rank_answers(tokens, questions.input_ids[lo:hi].to(device),
                                             questions.attention_mask[lo:hi].to(device),
                                             answers.input_ids.to(device), answers.attention_mask.to(device), k)
            for qid, row in zip(split.question_ids[lo:hi], topk_ids.cpu()):
                predictions[qid] = split.answer_list[int(row[0])]
            bar.update(hi - lo)
    timings["answer_ranking_s"] = time.perf_counter() - start
    gold = dict(zip(split.question_ids, split.answers))
    metrics = {"acc": qa_accuracy(predictions, gold)}
    counts = {"questions": len(split.questions), "questions_total": total, "videos": len(set(split.video_names)),
              "videos_total": total_videos, "videos_skipped": len(videos.skipped), "videos_decoded": videos.decoded,
              "videos_from_cache": videos.cached, "answers": len(split.answer_list), "k_effective": k}
    return TaskResult(metrics=metrics, counts=counts, token_counts=token_counts_of(videos), timings=timings,
                      skipped=[{"path": s.path, "reason": s.reason} for s in videos.skipped],
                      extra={"predictions": [{"question_id": q, "answer": a} for q, a in predictions.items()]})
