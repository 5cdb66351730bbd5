"""Action recognition (task ``classification``): each video's softmax averaged over its test views,
scored by top-1 / top-5 accuracy (%) and accuracy per class.

The run: every view of a video (``clips x crops``, data/views.py) goes through the backbone with
the reducer; the per-view class probabilities are averaged (VideoMAE's test protocol) and cached
per video, so a second run with the same model, schedule and views decodes nothing.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import torch

from vidtldr.errors import ConfigError
from vidtldr.tasks.base import Task, TaskResult, register_task

TOP_K = 5


# ----------------------------------------------------------------------------- metrics (pure)


def topk_hits(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``[N]`` bool: the label is among the ``k`` highest probabilities of its row (``[N, C]``).
    Ties are broken by ``torch.topk`` (the lower class index first on CPU)."""
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def accuracy_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """top-1 / top-5 accuracy in %, the mean of the per-class top-1 accuracies, and the per-class
    top-1 accuracy (%) with its video count, for the classes that occur in ``labels``."""
    if probs.shape[0] == 0:
        raise ValueError("no videos to score")
    top1, top5 = topk_hits(probs, labels, 1), topk_hits(probs, labels, TOP_K)
    per_class = {}
    for cls in sorted(set(labels.tolist())):
        rows = labels == cls
        per_class[str(cls)] = {"videos": int(rows.sum()), "top1": round(100.0 * top1[rows].float().mean().item(), 4)}
    return {"top1": 100.0 * top1.float().mean().item(), "top5": 100.0 * top5.float().mean().item(),
            "mean_class_top1": sum(c["top1"] for c in per_class.values()) / len(per_class),
            "per_class_top1": per_class}


def predictions(names: Sequence[str], labels: Sequence[int], probs: torch.Tensor) -> list[dict]:
    """``predictions.json``: per video its annotation path, label, top-5 classes and probabilities."""
    k = min(TOP_K, probs.shape[1])
    top = probs.topk(k, dim=1)
    return [{"video": name, "label": int(label), "top5": [int(i) for i in ids], "top5_probs": [float(p) for p in ps]}
            for name, label, ids, ps in zip(names, labels, top.indices.tolist(), top.values.tolist(), strict=True)]


def view_probabilities(model: Any, views: torch.Tensor, reducer: Any) -> tuple[torch.Tensor, list[int]]:
    """``views`` ``[V, T, 3, H, W]`` of one video -> (the mean over views of the softmax ``[C]``,
    the per-block token counts)."""
    out = model.encode_vision(views, reducer=reducer)
    probs = model.classify(out.pooled).float().softmax(dim=-1)
    return probs.mean(dim=0), list(out.token_counts)


# ----------------------------------------------------------------------------- the task


@register_task("classification")
class ClassificationTask(Task):
    """Action recognition with multi-view testing (VideoMAE's protocol); the model's classifier head
    must have the dataset's ``num_classes`` outputs (a random-weight model only needs the labels to
    fit its head)."""

    readers = ("videomae_list", "kinetics_csv", "ssv2_json")
    heads = "classification"
    trims_videos = False
    limit_unit = "videos"
    metric_columns = ("top1", "top5")
    headline_metrics = ("top1", "top5")
    metric_labels = {"top1": "top-1 accuracy", "top5": "top-5 accuracy"}
    uses_text = False
    views = True
    smoke_model = "videomae_tiny"
    data_help = ("annotations: VideoMAE's list files ('<video path> <class index>' per line; its DATASET.md) or the "
                 "official Kinetics CSV / SSv2 validation.json (dataset.reader=kinetics_csv|ssv2_json) under "
                 "<paths.data>/anno_downstream/; videos under <paths.data>/videos/<video_dir>/ "
                 "(see README, 'Action recognition')")

    def table_row(self, metrics: dict) -> dict:
        from vidtldr.tasks.metrics import number

        return {k: number(metrics.get(k)) for k in self.metric_columns if k in metrics}

    def outputs(self, result: TaskResult) -> dict:
        return {"predictions.json": result.extra["predictions"]}

    def run(self, job: Any) -> TaskResult:
        from vidtldr.data.dataset import ViewSpec, ViewsDataset

        spec, split, model = job.spec, job.split, job.model
        self._check_head(model, split, job)
        total = len(split.videos)
        keep = total if spec.limit is None else min(total, int(spec.limit))
        names, paths, labels = split.video_names[:keep], split.videos[:keep], split.labels[:keep]
        views = ViewSpec(num_frames=spec.num_frames, sampling=spec.views["sampling"], clips=spec.views["clips"],
                         crops=spec.views["crops"], size=job.img_size, interval=spec.views["frame_interval"])
        device = next(model.parameters()).device

        def encode(batch: torch.Tensor) -> list[dict]:  # [B, V, T, 3, H, W]
            out = []
            with torch.no_grad():
                for video in batch:
                    probs, counts = view_probabilities(model, video.to(device), job.reducer)
                    out.append({"probs": probs.cpu(), "token_counts": torch.tensor(counts)})
            return out

        start = time.perf_counter()
        features, skipped, decoded, cached = job.cached_videos(
            names, paths, encode,
            make_dataset=lambda todo, skip, frame_cache: ViewsDataset(todo, views, skip, frame_cache=frame_cache))
        seconds = time.perf_counter() - start
        bad = {s.path for s in skipped}
        rows = [i for i, path in enumerate(paths) if path not in bad]
        if not rows:
            raise ConfigError("every video was skipped as unreadable: nothing to score")
        probs = torch.stack([features.by_key[names[i]]["probs"] for i in rows])
        gold = torch.tensor([labels[i] for i in rows])
        kept_names = [names[i] for i in rows]
        counts = token_counts(features)
        metrics = accuracy_metrics(probs, gold)
        n_views = views.clips * views.crops
        return TaskResult(
            metrics=metrics,
            counts={"videos": len(rows), "videos_total": total, "videos_decoded": decoded, "videos_cached": cached,
                    "views_per_video": n_views, "classes": int(probs.shape[1])},
            token_counts=counts, timings={"video_s": seconds},
            cache={"video": job.video_cache.stats(), "frames": features.frames},
            skipped=[{"index": s.index, "path": s.path, "reason": s.reason} for s in skipped],
            extra={"predictions": predictions(kept_names, gold.tolist(), probs),
                   "cost": _cost(job, counts, len(rows), n_views)})

    @staticmethod
    def _check_head(model: Any, split: Any, job: Any) -> None:
        """A checkpoint's head must have the dataset's classes; any head must cover the labels."""
        classes = int(model.num_classes)
        wanted = split.num_classes
        if job.spec.init == "checkpoint" and wanted is not None and wanted != classes:
            raise ConfigError(f"the checkpoint's classifier has {classes} classes, dataset {job.spec.dataset} has "
                              f"num_classes: {wanted}; use the checkpoint fine-tuned on this dataset")
        top = max(split.labels) if split.labels else -1
        if top >= classes:
            raise ConfigError(f"the model's classifier has {classes} classes, the annotation has class {top}")


def token_counts(features: Any) -> list[int]:
    for stored in features.by_key.values():
        return [int(c) for c in stored["token_counts"]]
    return []


def _cost(job: Any, counts: list[int], videos: int, views: int) -> Optional[dict]:
    """Whole-evaluation encoder GFLOPs (paper convention): per view x views x videos."""
    from vidtldr.cost.vision import reducer_cost, vision_dims

    if not counts:
        return None
    per_view = reducer_cost(vision_dims(job.spec.arch_config()), job.spec.num_frames, job.reducer)
    return {"gflops_paper_per_view": round(per_view.gflops_paper, 6), "views_per_video": views, "videos": videos,
            "gflops_paper_total": round(per_view.gflops_paper * views * videos, 6)}
