"""Retrieval run: texts and videos -> features (cached) -> ITC and ITM-reranked scores -> metrics.

The scoring is :mod:`vidtldr.tasks.retrieval`'s and the metrics :mod:`vidtldr.tasks.metrics`'; this
module wires them to the cache, the progress bars and the run's bookkeeping.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vidtldr.run import distributed as D
from vidtldr.run.cache import FeatureCache
from vidtldr.data.annotations import RetrievalSplit
from vidtldr.run.feature_store import TokenStore, build_from_cache, store_dir
from vidtldr.tasks.metrics import retrieval_metrics
from vidtldr.models.tokenizer import tokenize
from vidtldr.tasks import retrieval as R
from vidtldr.cost.itm import evaluation_cost
from vidtldr.cost.text import text_dims
from vidtldr.cost.vision import reducer_cost, vision_dims
from vidtldr.tasks.itm import pairwise_pairs, rerank
from vidtldr.run.frame_cache import frame_cache_from
from vidtldr.run.runner_features import (VideoFeatures, all_ranks_outcome, exchange_cache, first_path_of, frames_entry, load_shared_shard, stack,
                                           token_counts_by_video, token_counts_of, unique_in_order, video_features)
from vidtldr.run.runner_subset import subset_retrieval
from vidtldr.run.settings import RunSettings
from vidtldr.run.task_run import TaskJob, register_runner
from vidtldr.tasks.base import TaskResult

log = logging.getLogger(__name__)


def text_features(model, tokenizer, texts: list[str], max_len: int, batch: int, cache: FeatureCache) -> R.TextFeatures:
    tokens = tokenize(tokenizer, texts, max_len)
    from vidtldr.run.cache import stable_hash

    item = "texts:" + stable_hash(tokens.input_ids.tolist(), 32)
    stored = cache.load(item)
    if stored is not None:
        return R.TextFeatures(stored["embeds"], stored["mask"], stored["feat"])
    feats = R.encode_texts(model, tokens.input_ids, tokens.attention_mask, batch_size=batch)
    cache.save(item, {"embeds": feats.embeds, "mask": feats.mask, "feat": feats.feat})
    return feats


def _nothing(stored: dict) -> dict:
    # The feature-store path keeps nothing per video in memory: tokens, ITC projections and token
    # counts are all read back from the store, so memory does not grow with the number of videos.
    return {}


def _sum_stats(stats: list[dict]) -> dict:
    out = dict(stats[0])
    for key in ("hits", "misses", "writes"):
        out[key] = sum(s[key] for s in stats)
    return out


@register_runner("retrieval")
def run_retrieval_job(job: TaskJob) -> TaskResult:
    return run_retrieval(job.model, job.tokenizer, job.reducer, job.split, spec=job.spec, video_cache=job.video_cache,
                         text_cache=job.text_cache, img_size=job.img_size, settings=job.settings,
                         progress=job.progress, dist_ctx=job.dist_ctx, scratch=job.scratch)


def run_retrieval(model, tokenizer, reducer, split: RetrievalSplit, *, spec, video_cache: FeatureCache,
                  text_cache: FeatureCache, img_size: int, settings: RunSettings, progress: bool = True,
                  dist_ctx: D.DistContext = D.SINGLE, scratch: Path | None = None) -> TaskResult:
    """``settings.token_store``: ``disk`` re-ranks from the memory-mapped feature store,
    ``memory`` from one stacked tensor (the original path). Under ``torch.distributed`` the videos and
    the ITM rows are split across ranks (``vidtldr.run.distributed``); every rank returns the same result."""
    timings: dict[str, float] = {}
    engine, mode = settings.itm_engine, settings.token_store
    total_videos, total_texts = len(split.videos), len(split.texts)
    if spec.limit is not None and spec.limit < total_videos:
        split = subset_retrieval(split, range(spec.limit))
        log.info("data.limit=%d: %d videos, %d texts (of %d / %d)", spec.limit, len(split.videos),
                 len(split.texts), total_videos, total_texts)

    vision_s = [0.0]  # model time inside the video stage (the rest is decoding and cache I/O)

    def encode(frames: torch.Tensor) -> list[dict]:
        begin = time.perf_counter()
        feats = R.encode_videos(model, [frames], reducer=reducer)  # ends with .cpu(): timed to completion
        vision_s[0] += time.perf_counter() - begin
        counts = torch.tensor(feats.token_counts, dtype=torch.long)
        # clone, not contiguous(): a row of the batch is already contiguous, and torch.save of that view
        # would write (and every later load would allocate) the whole batch's storage into each shard.
        return [{"tokens": feats.tokens[i].clone(), "feat": feats.feat[i].clone(), "token_counts": counts}
                for i in range(feats.tokens.shape[0])]

    shared_video, shared_text = _shared_caches(mode, video_cache, text_cache, dist_ctx, scratch)

    start = time.perf_counter()
    order = unique_in_order(split.video_names)
    path_of = first_path_of(split.video_names, split.videos)
    shared_video.bind_sources(path_of)  # every video's file identity is part of its shard's and the store's name
    mine = D.shard(order, dist_ctx)  # everything in a single process
    frame_cache = frame_cache_from(settings)
    videos: VideoFeatures = video_features(
        [path_of[k] for k in mine], mine, encode, shared_video, num_frames=spec.num_frames,
        trimmed30=spec.trimmed30, size=img_size, batch_size=settings.batch_size,
        num_workers=settings.num_workers, skip_unreadable=settings.skip_unreadable, progress=progress,
        retain=_nothing if mode == "disk" else None, decoder=settings.decoder, frame_cache=frame_cache)
    skipped, decoded, cached = all_ranks_outcome(videos, dist_ctx)  # every rank's shards are on disk from here on
    timings["video_features_s"] = time.perf_counter() - start
    timings["vision_encoder_s"] = vision_s[0]
    if skipped:
        bad = {s.path for s in skipped}
        split = subset_retrieval(split, [v for v, p in enumerate(split.videos) if p not in bad])
    distinct = len(unique_in_order(split.video_names))  # the videos evaluated, each encoded once

    start = time.perf_counter()
    text = _text_features_once(model, tokenizer, split.texts, spec.max_txt_l, settings.text_batch,
                               shared_text if dist_ctx.enabled else text_cache, dist_ctx)
    timings["text_features_s"] = time.perf_counter() - start

    start = time.perf_counter()
    if mode == "disk":
        store, vision_feat, vision_tokens, token_counts, store_info = _from_store(split, settings, shared_video,
                                                                                 dist_ctx)
        timings["feature_store_s"] = time.perf_counter() - start
    else:
        store, store_info = None, {"mode": mode}
        vision_feat, vision_tokens, token_counts = _from_memory(split, videos, shared_video, dist_ctx)
    i2t_emb = R.itc_scores(vision_feat, text.feat)
    timings["itc_s"] = time.perf_counter() - start

    start = time.perf_counter()
    scores = _itm(model, i2t_emb, text, vision_tokens, engine, spec.k_test, settings.itm_chunk, progress, dist_ctx,
                  store)
    timings["itm_s"] = time.perf_counter() - start
    n_v, n_t = i2t_emb.shape

    start = time.perf_counter()
    metrics = _metrics(scores, split)
    timings["metrics_s"] = time.perf_counter() - start
    counts = {"videos": n_v, "texts": n_t, "videos_total": total_videos, "texts_total": total_texts,
              "videos_skipped": len(skipped), "videos_decoded": decoded,
              "videos_from_cache": cached, "distinct_video_files": distinct,
              "k_test_effective": {"v2t": min(n_t, spec.k_test), "t2v": min(n_v, spec.k_test)}}
    cache_stats = {"video": video_cache.stats(), "text": text_cache.stats(),
                   "frames": frames_entry(videos, frame_cache, settings, dist_ctx)}
    if dist_ctx.enabled and video_cache.enabled:
        cache_stats["video"] = _sum_stats(D.all_gather_objects(video_cache.stats(), dist_ctx))
    cost = evaluation_cost_entry(model, reducer, spec.num_frames, distinct, n_t,
                                 int(text.embeds.shape[1]), spec.k_test, n_v, scores.stats, timings)
    by_video = store.token_counts_by_video if store is not None else token_counts_by_video(videos)
    return TaskResult(metrics=metrics, counts=counts, token_counts=token_counts, timings=timings,
                      skipped=[{"path": s.path, "reason": s.reason} for s in skipped], cache=cache_stats,
                      extra={"feature_store": store_info, "cost": cost},
                      video_token_counts={k: by_video[k] for k in unique_in_order(split.video_names) if k in by_video})


def _shared_caches(mode: str, video_cache: FeatureCache, text_cache: FeatureCache, dist_ctx: D.DistContext,
                   scratch: Path | None) -> tuple[FeatureCache, FeatureCache]:
    """The caches the ranks exchange features through, and the store is packed from: the on-disk cache,
    or, when the user turned it off, a run-scoped scratch cache (removed by the runner)."""
    return (exchange_cache(video_cache, scratch, needed=mode == "disk" or dist_ctx.enabled),
            exchange_cache(text_cache, scratch, needed=dist_ctx.enabled))


def _text_features_once(model, tokenizer, texts, max_txt_l: int, batch: int, cache: FeatureCache,
                        dist_ctx: D.DistContext):
    """Text features; under torch.distributed computed once, on rank 0, the others read its shards."""
    if dist_ctx.enabled and dist_ctx.is_main:
        text = text_features(model, tokenizer, texts, max_txt_l, batch, cache)
    D.barrier(dist_ctx)
    if not (dist_ctx.enabled and dist_ctx.is_main):
        text = text_features(model, tokenizer, texts, max_txt_l, batch, cache)
    return text


def _from_store(split: RetrievalSplit, settings: RunSettings, shared_video: FeatureCache, dist_ctx: D.DistContext):
    """Pack (rank 0) and open the memory-mapped token store: the store, pooled features, per-row token
    views, token counts and the record's store entry."""
    keys = unique_in_order(split.video_names)
    dtype = settings.token_store_dtype
    where = store_dir(shared_video, keys, dtype)
    if dist_ctx.is_main:
        build_from_cache(shared_video, keys, dtype)
    D.barrier(dist_ctx)
    store = TokenStore(where, window_mb=settings.token_store_window_mb)
    info = {"mode": "disk", "dtype": dtype, "bytes": store.nbytes, "videos": len(store)}
    return store, store.feats(split.video_names), store.view(split.video_names), list(store.token_counts), info


def _from_memory(split: RetrievalSplit, videos: VideoFeatures, shared_video: FeatureCache, dist_ctx: D.DistContext):
    """Pooled features, stacked tokens and token counts held in memory (``eval.token_store=memory``)."""
    if dist_ctx.enabled:  # every rank needs every video's tokens: read them from the shared shards
        have = set(videos.by_key)
        for key in unique_in_order(split.video_names):
            if key not in have:
                videos.by_key[key] = load_shared_shard(shared_video, key)
    return (stack(videos, split.video_names, "feat"), stack(videos, split.video_names, "tokens"),
            token_counts_of(videos))


def _metrics(scores, split: RetrievalSplit) -> dict:
    def numpy_ready(m: torch.Tensor) -> torch.Tensor:
        # numpy has no bfloat16; widening is exact, so the order of tied scores is unchanged.
        # float16 (the official autocast dtype) is kept as is.
        return m.float() if m.dtype == torch.bfloat16 else m

    return {"itm": retrieval_metrics(numpy_ready(scores.i2t), numpy_ready(scores.t2i), split.txt2img,
                                     split.img2txt),
            "itc": retrieval_metrics(numpy_ready(scores.i2t_emb), numpy_ready(scores.t2i_emb), split.txt2img,
                                     split.img2txt)}


def evaluation_cost_entry(model, reducer, num_frames: int, distinct_videos: int, n_t: int, max_txt_l: int,
                          k_test: int, n_v: int, stats: R.ITMStats, timings: dict) -> dict:
    """``record.json``'s ``cost``: GFLOPs of the whole evaluation by stage (:mod:`vidtldr.cost.itm`;
    every video and text counted as computed, cache or not), the ITM engine's work against the official
    pairwise execution, and the seconds this run spent per stage."""
    cfg = model.cfg
    vision = reducer_cost(vision_dims(cfg), num_frames, reducer)
    tokens = sorted({nv for (_, nv) in stats.pair_shapes}) or [vision.tokens_per_layer[-1]]
    pairs_pairwise = pairwise_pairs(n_v, n_t, k_test)
    gflops = evaluation_cost(text_dims(cfg), vision_per_video=(vision.paper, vision.true), videos=distinct_videos,
                             texts=n_t, max_txt_l=max_txt_l, vision_tokens=tokens[-1], stats=stats.to_dict(),
                             pairs_pairwise=pairs_pairwise, embed_dim=cfg.embed_dim)
    video_s, vision_s = timings.get("video_features_s", 0.0), timings.get("vision_encoder_s", 0.0)
    seconds = {"decode": video_s - vision_s, "vision": vision_s, "text": timings.get("text_features_s", 0.0),
               "itc": timings.get("itc_s", 0.0) - timings.get("feature_store_s", 0.0),
               "itm": timings.get("itm_s", 0.0)}
    return {"itm_engine": stats.engine, "gflops": gflops,
            "pairs": {"scored": stats.pairs, "written": stats.written, "pairwise": pairs_pairwise},
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "itm_work": stats.to_dict(),
            "convention": "gflops.paper: one multiply-add = 1 (fvcore, as the paper); gflops.true: all flops. "
                          "Every video and text is counted as computed; seconds are this run's (cache hits "
                          "make decode/vision/text cheap). decode = the video stage minus the encoder "
                          "(decoding, transforms, cache I/O)."}


def _itm(model, i2t_emb, text, vision_tokens, engine: str, k_test: int, chunk: int, progress: bool,
         dist_ctx: D.DistContext, store) -> R.RetrievalScores:
    """ITM re-ranking with ``engine`` (:mod:`vidtldr.tasks.itm`); under torch.distributed each rank
    scores its share and the matrices are combined exactly. ``scores.stats`` is then every rank's work."""
    n_v, n_t = i2t_emb.shape
    rows_v = D.shard(range(n_v), dist_ctx) if dist_ctx.enabled else None
    rows_t = D.shard(range(n_t), dist_ctx) if dist_ctx.enabled and engine == "pairwise" else None
    if engine == "pairwise":
        total = (n_v if rows_v is None else len(rows_v)) * min(n_t, k_test) + \
            (n_t if rows_t is None else len(rows_t)) * min(n_v, k_test)
    else:
        total = None  # the union of both directions' candidates: known once the engine built it
    try:
        with tqdm(total=total, desc=f"ITM re-ranking ({engine})", unit="pair", disable=not progress,
                  leave=False) as bar:
            scores = rerank(model, i2t_emb, text, vision_tokens, engine=engine, k_test=k_test, chunk=chunk,
                            video_rows=rows_v, text_rows=rows_t, on_pairs=bar.update)
    finally:
        if store is not None:
            store.close()
    if dist_ctx.enabled:
        scores.i2t = D.combine_rows(scores.i2t, rows_v, dist_ctx)
        if engine == "pairwise":
            scores.t2i = D.combine_rows(scores.t2i, rows_t, dist_ctx)
        else:  # sharded by video: this rank filled its videos' columns of text->video
            scores.t2i = D.combine_rows(scores.t2i.t().contiguous(), rows_v, dist_ctx).t().contiguous()
        stats = D.all_gather_objects(scores.stats, dist_ctx)
        scores.stats = stats[0]
        for other in stats[1:]:
            scores.stats = scores.stats.add(other)
    return scores

