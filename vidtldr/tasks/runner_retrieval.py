"""Retrieval run: texts and videos -> features (cached) -> ITC and ITM-reranked scores -> metrics.

The scoring is :mod:`vidtldr.tasks.retrieval`'s and the metrics :mod:`vidtldr.metrics`'; this
module wires them to the cache, the progress bars and the run's bookkeeping.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from vidtldr.cache import FeatureCache
from vidtldr.data.annotations import RetrievalSplit
from vidtldr.metrics import retrieval_metrics
from vidtldr.models.tokenizer import tokenize
from vidtldr.tasks import retrieval as R
from vidtldr.tasks.runner_features import VideoFeatures, stack, token_counts_of, video_features
from vidtldr.tasks.runner_subset import subset_retrieval

log = logging.getLogger(__name__)


@dataclass
class TaskResult:
    metrics: dict
    counts: dict
    token_counts: list
    timings: dict
    skipped: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


class _ProgressModel:
    """Delegates to the model and advances a progress bar by the number of pairs each ITM call
    scores; lets the re-ranking function stay unaware of progress reporting."""

    def __init__(self, model, bar):
        self._model, self._bar = model, bar

    def itm_logit(self, text_embeds, text_mask, vision_tokens):
        out = self._model.itm_logit(text_embeds, text_mask, vision_tokens)
        self._bar.update(int(text_embeds.shape[0]))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def text_features(model, tokenizer, texts: list[str], max_len: int, batch: int, cache: FeatureCache) -> R.TextFeatures:
    tokens = tokenize(tokenizer, texts, max_len)
    from vidtldr.cache import stable_hash

    item = "texts:" + stable_hash(tokens.input_ids.tolist(), 32)
    stored = cache.load(item)
    if stored is not None:
        return R.TextFeatures(stored["embeds"], stored["mask"], stored["feat"])
    feats = R.encode_texts(model, tokens.input_ids, tokens.attention_mask, batch_size=batch)
    cache.save(item, {"embeds": feats.embeds, "mask": feats.mask, "feat": feats.feat})
    return feats


def run_retrieval(model, tokenizer, reducer, split: RetrievalSplit, *, spec, video_cache: FeatureCache,
                  text_cache: FeatureCache, img_size: int, settings: dict, progress: bool = True) -> TaskResult:
    timings: dict[str, float] = {}
    total_videos, total_texts = len(split.videos), len(split.texts)
    if spec.limit is not None and spec.limit < total_videos:
        split = subset_retrieval(split, range(spec.limit))
        log.info("data.limit=%d: %d videos, %d texts (of %d / %d)", spec.limit, len(split.videos),
                 len(split.texts), total_videos, total_texts)

    def encode(frames: torch.Tensor) -> list[dict]:
        feats = R.encode_videos(model, [frames], reducer=reducer)
        counts = torch.tensor(feats.token_counts, dtype=torch.long)
        return [{"tokens": feats.tokens[i].contiguous(), "feat": feats.feat[i].contiguous(), "token_counts": counts}
                for i in range(feats.tokens.shape[0])]

    start = time.perf_counter()
    videos: VideoFeatures = video_features(
        split.videos, split.video_names, encode, video_cache, num_frames=spec.num_frames, trimmed30=spec.trimmed30,
        size=img_size, batch_size=settings["batch_size"], num_workers=settings["num_workers"],
        skip_unreadable=settings["skip_unreadable"], progress=progress)
    timings["video_features_s"] = time.perf_counter() - start
    if videos.skipped:
        bad = {s.path for s in videos.skipped}
        split = subset_retrieval(split, [v for v, p in enumerate(split.videos) if p not in bad])

    start = time.perf_counter()
    text = text_features(model, tokenizer, split.texts, spec.max_txt_l, settings["text_batch"], text_cache)
    timings["text_features_s"] = time.perf_counter() - start

    start = time.perf_counter()
    vision_feat = stack(videos, split.video_names, "feat")
    vision_tokens = stack(videos, split.video_names, "tokens")
    i2t_emb = R.itc_scores(vision_feat, text.feat)
    timings["itc_s"] = time.perf_counter() - start

    start = time.perf_counter()
    n_v, n_t = i2t_emb.shape
    pairs = n_v * min(n_t, spec.k_test) + n_t * min(n_v, spec.k_test)
    with tqdm(total=pairs, desc="ITM re-ranking", unit="pair", disable=not progress, leave=False) as bar:
        scores = R.itm_rerank(_ProgressModel(model, bar), i2t_emb, text, vision_tokens, k_test=spec.k_test,
                              chunk=settings["itm_batch"])
    timings["itm_s"] = time.perf_counter() - start

    start = time.perf_counter()

    def numpy_ready(m: torch.Tensor) -> torch.Tensor:
        # numpy has no bfloat16; widening is exact, so the order of tied scores is unchanged.
        # float16 (the official autocast dtype) is kept as is.
        return m.float() if m.dtype == torch.bfloat16 else m

    metrics = {
        "itm": retrieval_metrics(numpy_ready(scores.i2t), numpy_ready(scores.t2i), split.txt2img, split.img2txt),
        "itc": retrieval_metrics(numpy_ready(scores.i2t_emb), numpy_ready(scores.t2i_emb), split.txt2img,
                                 split.img2txt),
    }
    timings["metrics_s"] = time.perf_counter() - start
    counts = {"videos": n_v, "texts": n_t, "videos_total": total_videos, "texts_total": total_texts,
              "videos_skipped": len(videos.skipped), "videos_decoded": videos.decoded,
              "videos_from_cache": videos.cached, "distinct_video_files": len(videos.by_key),
              "k_test_effective": {"v2t": min(n_t, spec.k_test), "t2v": min(n_v, spec.k_test)}}
    return TaskResult(metrics=metrics, counts=counts, token_counts=token_counts_of(videos), timings=timings,
                      skipped=[{"path": s.path, "reason": s.reason} for s in videos.skipped])
