"""Fidelity of a reduced model to the same model unreduced, on unlabelled videos.

A :class:`Session` decodes a collection of videos once (a dataset's split, captions included, or
any folder of videos), computes the unreduced features once through the evaluation's feature cache
(the very shards an evaluation with ``merge=none`` writes and reads), and then measures any reducer
against them (:meth:`Session.measure`): per video the cosine of the pooled ITC embeddings and the
agreement of the final tokens with the unreduced tokens they came from; per collection the
agreement of the ITC rankings (text-to-video with captions, video-to-video without), the
schedule's GFLOPs (paper convention) and the encoder's wall-clock time. :mod:`vidtldr.analysis.search.tune`
measures many schedules on one session.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch
from omegaconf import DictConfig

from vidtldr import jsonio
from vidtldr.analysis.search import agreement as A
from vidtldr.config_utils import plain
from vidtldr.errors import ConfigError, MissingFilesError, VideoError
from vidtldr.files import atomic_write_text
from vidtldr.run.cache import FeatureCache

log = logging.getLogger(__name__)

# The label-free metrics a schedule search can maximise (``tune.metric``).
METRICS = ("embedding_cosine_mean", "itc_top1_agreement", "itc_top5_overlap", "itc_top10_overlap",
           "spearman_mean", "kendall_mean", "token_agreement_mean")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


# ----------------------------------------------------------------------------- what is compared


@dataclass
class Collection:
    """Distinct videos (``keys`` ids, ``paths`` files) and, from a dataset, its captions."""

    keys: list[str]
    paths: list[str]
    texts: Optional[list[str]] = None
    origin: str = ""
    root: str = ""


def folder_collection(directory: str | Path, limit: Optional[int] = None) -> Collection:
    """Every video file under ``directory`` (recursively, sorted by relative path)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ConfigError(f"videos={directory}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ConfigError(f"videos={directory}: no video files (looked for {', '.join(VIDEO_SUFFIXES)})")
    if limit is not None:
        files = files[:limit]
    keys = [str(p.relative_to(root)) for p in files]
    return Collection(keys=keys, paths=[str(p) for p in files], origin=f"folder {root}", root=str(root.resolve()))


def dataset_collection(split, limit: Optional[int], name: str, root: str | Path) -> Collection:
    """The distinct videos of a retrieval split (first ``limit`` videos, their captions)."""
    from vidtldr.run.runner_features import unique_in_order
    from vidtldr.run.runner_subset import subset_retrieval

    if getattr(split, "task", "retrieval") != "retrieval":
        raise ConfigError(f"dataset={name} is a QA split; fidelity compares retrieval embeddings: use a retrieval "
                          "dataset, or videos=<folder of its videos>")
    if limit is not None and limit < len(split.videos):
        split = subset_retrieval(split, range(limit))
    names = split.video_names or split.videos
    path_of: dict[str, str] = {}
    for key, path in zip(names, split.videos, strict=True):
        path_of.setdefault(key, path)
    keys = unique_in_order(names)
    return Collection(keys=keys, paths=[path_of[k] for k in keys], texts=list(split.texts),
                      origin=f"dataset {name}", root=str(Path(root).resolve()))


# ----------------------------------------------------------------------------- one session


@dataclass
class Session:
    """Everything that does not change between the schedules measured."""

    spec: object                       # vidtldr.run.runspec.RunSpec
    arch_cfg: object
    model: torch.nn.Module
    collection: Collection
    frames: list[torch.Tensor]         # [T, 3, H, W] per kept video
    keys: list[str]                    # kept videos (unreadable ones skipped)
    skipped: list[dict]
    ref_tokens: list[torch.Tensor]     # [N0, C] unreduced final tokens per video
    ref_feat: torch.Tensor             # [V, E] unreduced ITC embeddings
    text_feat: Optional[torch.Tensor]  # [Q, E] caption embeddings, or None
    text: Optional[object] = None      # the captions' TextFeatures (for ITM re-ranking)
    k_test: int = 128
    itm_engine: str = "grouped"
    batch_size: int = 4
    ks: tuple = (1, 5, 10)
    cache: dict = field(default_factory=dict)
    adjusted: dict = field(default_factory=dict)  # {key: {requested, effective, reason}} as in eval's record
    ref_encoder_s: Optional[float] = None
    itm_ref: Optional[torch.Tensor] = None  # unreduced ITM text->video scores, computed on first use

    def batches(self):
        for start in range(0, len(self.frames), self.batch_size):
            yield start, torch.stack(self.frames[start:start + self.batch_size])

    @torch.no_grad()
    def encode(self, reducer, trace_source: bool = False) -> tuple[list, torch.Tensor, list, list, float]:
        """(final tokens per video, ITC embeddings [V, E], provenance per video or None, token counts,
        encoder seconds)."""
        from vidtldr.models.precision import model_device

        device = model_device(self.model)
        tokens, feats, sources, counts = [], [], [], []
        elapsed = 0.0
        for _, videos in self.batches():
            start = time.perf_counter()
            out = self.model.encode_vision(videos.to(device), reducer=reducer, trace_source=trace_source)
            feat = self.model.itc_vision(out.pooled)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed += time.perf_counter() - start
            tokens.extend(out.tokens.float().cpu())
            feats.append(feat.float().cpu().reshape(feat.shape[0], -1))
            src = out.state.source
            sources.extend(src.float().cpu() if src is not None else [None] * feat.shape[0])
            counts = list(out.token_counts)
        return tokens, torch.cat(feats), sources, counts, elapsed

    def scores(self, feat: torch.Tensor) -> torch.Tensor:
        """Rows to compare: captions x videos, or (no captions) videos x other videos."""
        if self.text_feat is not None:
            return self.text_feat.double() @ feat.double().t()
        return A.mask_diagonal(feat.double() @ feat.double().t())

    def itm_t2i(self, feat: torch.Tensor, tokens: list) -> torch.Tensor:
        """Text->video ITM re-ranked scores ``[Q, V]`` (the evaluation's engine; -100 outside each
        text's top-``k_test`` ITC candidates)."""
        from vidtldr.tasks import retrieval as R
        from vidtldr.tasks.itm import rerank

        i2t = R.itc_scores(feat, self.text.feat)
        return rerank(self.model, i2t, self.text, tokens, engine=self.itm_engine, k_test=self.k_test).t2i

    def itm_agreement(self, feat: torch.Tensor, tokens: list) -> dict:
        """Agreement of the ITM re-ranked text->video rankings: same best video, overlap of the
        re-ranked top-k (k = the candidates each text gets, capped by the videos)."""
        if self.itm_ref is None:
            self.itm_ref = self.itm_t2i(self.ref_feat, self.ref_tokens)
        red = self.itm_t2i(feat, tokens)
        k = min(self.k_test, red.shape[1])
        return {"itm_top1_agreement": float(A.topk_overlap(self.itm_ref, red, 1).mean()),
                f"itm_top{k}_overlap": float(A.topk_overlap(self.itm_ref, red, k).mean()), "itm_k": k}

    def measure(self, reducer, *, tokens: bool = True, itm: bool = False, gflops: Optional[float] = None) -> dict:
        """Agreement of ``reducer`` (None = unreduced) with the unreduced model, one flat dict;
        ``itm``: also of the ITM re-ranked rankings (captions only)."""
        red_tokens, feat, _, counts, elapsed = self.encode(reducer)
        out = {"gflops_paper": gflops}
        cos = A.embedding_cosine(self.ref_feat, feat)
        out["embedding_cosine_mean"] = float(cos.mean())
        out["embedding_cosine_min"] = float(cos.min())
        out.update(A.ranking_agreement(self.scores(self.ref_feat), self.scores(feat), ks=self.ks))
        out["rows"] = "text->video" if self.text_feat is not None else "video->video"
        if itm and self.text is not None:
            out.update(self.itm_agreement(feat, red_tokens))
        if tokens:
            traced, _, sources, _, _ = self.encode(reducer, trace_source=True)
            values = [A.token_agreement(r, t, s) for r, t, s in zip(self.ref_tokens, traced, sources, strict=True)]
            out["token_agreement_mean"] = float(sum(values) / len(values))
        out["token_counts"] = counts
        out["encoder_s"] = round(elapsed, 4)
        out["videos"] = len(self.keys)
        return out


def _decode(collection: Collection, spec, size: int) -> tuple[list, list, list]:
    """(kept keys, frames per kept video, skipped [{path, reason}]) with the evaluation's reader."""
    from vidtldr.data.dataset import VideoDataset, make_loader
    from vidtldr.run.frame_cache import frame_cache_from

    settings = spec.settings  # the evaluation's decoder and frame cache: frames decoded once for both
    dataset = VideoDataset(collection.paths, spec.num_frames, spec.trimmed30, size,
                           skip_unreadable=settings.skip_unreadable, decoder=settings.decoder,
                           frame_cache=frame_cache_from(settings))
    loader = make_loader(dataset, batch_size=settings.batch_size, num_workers=min(settings.num_workers, len(dataset)))
    keys, frames = [], []
    with loader:  # workers stopped on an error too
        for batch in loader:
            for j, (index, ok) in enumerate(zip(batch["index"].tolist(), batch["ok"].tolist(), strict=True)):
                if ok:
                    keys.append(collection.keys[index])
                    frames.append(batch["frames"][j].clone())
    skipped = [{"path": s.path, "reason": s.reason} for s in loader.skipped]
    for s in skipped:
        log.warning("skipped unreadable video %s: %s", s["path"], s["reason"])
    return keys, frames, skipped


def _reference(session_args: dict, cache: FeatureCache) -> tuple[list, torch.Tensor, Optional[float]]:
    """Unreduced tokens and embeddings, each video from the cache or encoded (and cached) now."""
    model, keys, frames, batch = (session_args[k] for k in ("model", "keys", "frames", "batch"))
    stored = {k: cache.load(k) for k in keys}
    todo = [i for i, k in enumerate(keys) if stored[k] is None]
    elapsed = None
    if todo:
        from vidtldr.tasks import retrieval as R

        start = time.perf_counter()
        for lo in range(0, len(todo), batch):
            rows = todo[lo:lo + batch]
            feats = R.encode_videos(model, [torch.stack([frames[i] for i in rows])], reducer=None)
            counts = torch.tensor(feats.token_counts, dtype=torch.long)
            for j, i in enumerate(rows):
                item = {"tokens": feats.tokens[j].clone(), "feat": feats.feat[j].clone(), "token_counts": counts}
                cache.save(keys[i], item)  # the evaluation's shard format: shared with merge=none runs
                stored[keys[i]] = item
        elapsed = time.perf_counter() - start
    tokens = [stored[k]["tokens"] for k in keys]
    feat = torch.stack([stored[k]["feat"].reshape(-1) for k in keys])
    return tokens, feat, elapsed


def gallery_size(videos: int, captions: bool) -> int:
    """Items each ranking row orders: every video for a caption, every *other* video for a video."""
    return videos if captions else videos - 1


def check_rankable(collection: Collection, videos: int, metric: Optional[str], ks: Sequence[int],
                   metric_key: str = "tune.metric") -> None:
    """Rankings need a gallery of at least 2 items, and ``metric`` (the option ``metric_key``: a tune
    objective, compare's fidelity metric) must be defined for this many: ``itc_top{k}_overlap`` says
    nothing unless k is below the gallery size (and in ``tune.ks``). Checked on the listed collection
    before the model is built, and again on the videos that decoded."""
    captions = bool(collection.texts)
    gallery = gallery_size(videos, captions)
    rows = "each caption ranks the videos" if captions else "each video ranks the other videos"
    if gallery < 2:
        found = f"{videos} video(s)" + (f" readable of {len(collection.keys)}" if videos != len(collection.keys) else "")
        raise VideoError(f"{collection.origin}: {found}; rankings need at least {2 if captions else 3} ({rows})")
    if metric is None or not metric.startswith("itc_top") or not metric.endswith("_overlap"):
        return
    k = int(metric[len("itc_top"):-len("_overlap")])
    defined = ", ".join(m for m in _defined_metrics(gallery, ks))
    if k >= gallery:
        raise ConfigError(f"{metric_key}={metric}: undefined for {videos} videos ({rows}: every one is in every "
                          f"top-{k}); accepted here: {defined}")
    if k not in ks:
        raise ConfigError(f"{metric_key}={metric}: k={k} is not in tune.ks={list(ks)}; accepted here: {defined}")


def _defined_metrics(gallery: int, ks: Sequence[int]) -> list[str]:
    return [m for m in METRICS if not m.endswith("_overlap") or
            (int(m[len("itc_top"):-len("_overlap")]) in ks and int(m[len("itc_top"):-len("_overlap")]) < gallery)]


def check_retrieval_family(spec) -> None:
    """Fidelity and tune score agreement of retrieval (ITC) embeddings: a family without the
    retrieval heads (VideoMAE: classification) is refused before anything is built."""
    from vidtldr.models.family import get_family

    heads = get_family(spec.family).heads
    if "retrieval" not in heads:
        raise ConfigError(f"model={spec.model}: fidelity and tune compare retrieval embeddings (ITC), which backbone "
                          f"family {spec.family!r} does not have (it builds {', '.join(heads)}); compare its "
                          "schedules with evaluation runs instead")


def prepare(cfg: DictConfig, *, ks: Sequence[int] = (1, 5, 10), metric: Optional[str] = None,
            metric_key: str = "tune.metric", explicit: Optional[Iterable[str]] = None) -> Session:
    """Resolve ``cfg`` like the evaluation, decode the collection, get the unreduced features;
    ``metric``: the objective a search (or a comparison) will use, given as option ``metric_key``
    (checked to be defined for this collection before the model is built); ``explicit``: the keys
    given on the command line (default: Hydra's overrides)."""
    from vidtldr.config_values import integers
    from vidtldr.data.annotations import load_split, video_root
    from vidtldr.run import adjust
    from vidtldr.run.assemble import (build, checkpoint_entry, feature_caches, input_checksums, load_tokenizer_for,
                                      resolve_run, weights_id)
    from vidtldr.run.inputs import check_inputs

    folder = cfg.get("videos")
    # The evaluation's resolution and assembly (vidtldr/run/assemble.py): the same model and, for the
    # unreduced features, the cache shards of an evaluation with merge=none; paths.data= with
    # model=tiny takes effect as in the evaluation.
    spec = resolve_run(cfg, tiny_data=folder is None,
                       explicit=adjust.explicit_keys() if explicit is None else explicit)
    check_retrieval_family(spec)
    settings = spec.settings
    arch_cfg = spec.arch_config("retrieval")
    adjusted = dict(spec.adjusted)  # implied settings, caps, clamped schedule entries: recorded as the evaluation does
    adjust.report(adjusted)
    dataset_cfg = spec.dataset_config
    if folder is None:
        if spec.heads != "retrieval":
            raise ConfigError(f"dataset={spec.dataset} is a {spec.task} split; fidelity compares retrieval "
                              "embeddings: use a retrieval dataset, or videos=<folder of its videos>")
        check_inputs(spec, dataset_cfg)
        collection = dataset_collection(load_split(dataset_cfg, spec.data_root), spec.limit, spec.dataset,
                                        video_root(dataset_cfg, spec.data_root))
    else:
        if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
            raise MissingFilesError(f"checkpoint {spec.checkpoint} does not exist (model.checkpoint=/path to choose one)")
        collection = folder_collection(folder, spec.limit)
    ks = integers("tune.ks" if metric else "fidelity.ks", ks)
    check_rankable(collection, len(collection.keys), metric, ks, metric_key)  # before the model is built
    spec = dataclasses.replace(spec, task="retrieval", heads="retrieval")
    model, _, _ = build(spec, arch_cfg)
    img_size = arch_cfg.vision.img_size
    keys, frames, skipped = _decode(collection, spec, img_size)
    check_rankable(collection, len(keys), metric, ks, metric_key)  # unreadable videos were skipped
    none_spec = dataclasses.replace(spec, merge="none", schedule=[])
    annotation = input_checksums(spec)["annotation"]["sha256"] if collection.texts else None
    video_cache, text_cache = feature_caches(none_spec, arch_cfg, weights_id(spec, checkpoint_entry(spec)), None,
                                             Path(collection.root), annotation)
    # shards are tied to the files' identities, as the evaluation's: a replaced video is a miss
    video_cache.bind_sources(dict(zip(collection.keys, collection.paths, strict=True)))
    batch = settings.batch_size
    ref_tokens, ref_feat, ref_s = _reference({"model": model, "keys": keys, "frames": frames, "batch": batch},
                                             video_cache)
    text, text_feat = None, None
    cache_stats = {"video": video_cache.stats()}
    if collection.texts:
        from vidtldr.run.runner_retrieval import text_features

        tokenizer, _, _ = load_tokenizer_for(spec, arch_cfg)
        text = text_features(model, tokenizer, collection.texts, spec.max_txt_l, settings.text_batch, text_cache)
        text_feat = text.feat
        cache_stats["text"] = text_cache.stats()
    return Session(spec=spec, arch_cfg=arch_cfg, model=model, collection=collection, frames=frames, keys=keys,
                   skipped=skipped, ref_tokens=ref_tokens, ref_feat=ref_feat, text_feat=text_feat, text=text,
                   k_test=spec.k_test, itm_engine=settings.itm_engine, batch_size=batch,
                   ks=tuple(int(k) for k in ks), cache=cache_stats, ref_encoder_s=ref_s, adjusted=adjusted)


# ----------------------------------------------------------------------------- costs


def encoder_gflops(arch_cfg, num_frames: int, reducer) -> float:
    """Paper-convention GFLOPs of the vision encoder with ``reducer`` (None = unreduced): the
    counting engine the evaluation and ``vidtldr.flops`` use."""
    from vidtldr.cost.vision import reducer_cost, vision_dims

    return reducer_cost(vision_dims(arch_cfg), num_frames, reducer).gflops_paper


def gflops_of(session: Session, reducer) -> float:
    return encoder_gflops(session.arch_cfg, session.spec.num_frames, reducer)


# ----------------------------------------------------------------------------- the command


SUMMARY_KEYS = ("gflops_paper", "embedding_cosine_mean", "itc_top1_agreement", "itc_top5_overlap",
                "spearman_mean", "kendall_mean", "token_agreement_mean", "encoder_s")


def run_fidelity(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Measure the configured reducer/schedule; write ``fidelity.json``; return the record."""
    from vidtldr.run.record import base_record, now_iso

    opts = cfg.get("fidelity") or {}
    session = prepare(cfg, ks=plain(opts.get("ks", [1, 5, 10])))
    spec = session.spec
    reducer = spec.reducer()
    result = session.measure(reducer, tokens=bool(opts.get("tokens", True)), itm=bool(opts.get("itm", True)),
                             gflops=gflops_of(session, reducer))
    result["gflops_paper_unreduced"] = gflops_of(session, None)
    if opts.get("time_reference", True):
        result["encoder_unreduced_s"] = round(session.encode(None)[4], 4)
    record = base_record()
    record.update({
        "kind": "fidelity", "status": "complete", "finished": now_iso(), "run_dir": str(run_dir),
        "model": spec.model, "dataset": spec.dataset, "collection": session.collection.origin,
        "merge": spec.merge, "schedule": ran_schedule(spec, session.adjusted), **spec.schedule_described(),
        "adjusted": session.adjusted,
        "num_frames": spec.num_frames, "attention": spec.settings.attention,
        "videos": len(session.keys), "skipped_videos": session.skipped, "cache": session.cache,
        "metrics": result, "config": plain(cfg),
    })
    if spec.init == "random":
        record["note"] = (f"model={spec.model} has random weights (seed {spec.seed}): the numbers show the mechanism, "
                          "not what a trained model does")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(run_dir) / "fidelity.json", jsonio.dumps(record, indent=1, default=str))
    return record


def ran_schedule(spec, adjusted: dict) -> list:
    """The per-block schedule that ran: the requested one, or its clamped entries where a block could
    not remove that many (recorded in ``adjusted["merge.r"]``)."""
    return list(adjusted["merge.r"]["effective"]) if "merge.r" in adjusted else list(spec.schedule)


def summary(record: dict) -> dict:
    """The one-line JSON the command prints last."""
    m = record["metrics"]
    out = {k: m.get(k) for k in SUMMARY_KEYS}
    out.update({k: v for k, v in m.items() if k.startswith("itm_top")})
    out.update(merge=record["merge"], merge_r=record["schedule"], videos=record["videos"],
               skipped=len(record["skipped_videos"]), rows=m.get("rows"),
               record=str(Path(record["run_dir"]) / "fidelity.json"))
    return out


def format_table(record: dict) -> str:
    m = record["metrics"]
    lines = [f"== fidelity | {record['collection']} | model={record['model']} | merge={record['merge']} "
             f"schedule={record['schedule']} ==", "metric | value", "---|---"]
    itm_keys = tuple(k for k in m if k.startswith("itm_top"))
    for key in SUMMARY_KEYS + ("embedding_cosine_min", "itc_top10_overlap") + itm_keys + (
            "encoder_unreduced_s", "gflops_paper_unreduced"):
        if m.get(key) is not None:
            value = m[key]
            lines.append(f"{key} | {value:.4f}" if isinstance(value, float) else f"{key} | {value}")
    lines.append(f"rankings: {m['rows']} ({m['queries']} rows x {m['gallery']} items); videos {record['videos']}, "
                 f"skipped {len(record['skipped_videos'])}")
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    return "\n".join(lines)


def main() -> None:
    """``python -m vidtldr.fidelity [overrides]``: the table, then one JSON line (last line)."""
    from vidtldr.entry import record_command

    record_command("fidelity", "vidtldr.fidelity", run_fidelity, format_table, summary)
