"""Smoke evaluations: the tiny model on generated tiny clips of every dataset config (every
annotation format: captions, caption lists, paragraphs, several ground-truth videos, QA with int
and string question ids; fine-tuned and zero-shot variants). Used by ``make smoke`` and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from vidtldr.config_utils import compose_config


def smoke_one(dataset: str, cache_dir: str | Path, out_dir: str | Path, extra: Sequence[str] = (),
              progress: bool = False) -> dict:
    """One tiny run of ``dataset`` (vid-TLDR with the tiny model's schedule); returns its record."""
    from vidtldr.data.registry import load_dataset_config
    from vidtldr.run.runner import run
    from vidtldr.tasks.base import get_task

    model = get_task(str(load_dataset_config(dataset)["task"])).smoke_model
    cfg = compose_config([f"dataset={dataset}", f"model={model}", "merge=vidtldr", f"paths.cache={cache_dir}",
                       "logger.wandb.enabled=false", *extra])
    return run(cfg, Path(out_dir) / dataset, progress=progress)


def summary_line(record: dict) -> str:
    m = record.get("metrics", {})
    ident = record["run"]
    if "acc" in m:
        score = f"acc {m['acc']:.2f}"
    elif "top1" in m:
        score = f"top-1 {m['top1']:.2f}  top-5 {m['top5']:.2f}"
    else:
        score = f"T2V R@1 {m['itm']['img_r1']:.2f}  V2T R@1 {m['itm']['txt_r1']:.2f}"
    counts = record["counts"]
    size = (f"{counts['videos']} videos / {counts['texts']} texts" if "texts" in counts
            else f"{counts['videos']} videos x {counts['views_per_video']} views" if "views_per_video" in counts
            else f"{counts['questions']} questions / {counts['videos']} videos")
    return f"{ident['dataset']:<22} {ident['task']:<9} {size:<28} tokens {record['token_counts'][-1]:>4}  {score}"


def smoke_all(cache_dir: str | Path, out_dir: str | Path, datasets: Iterable[str] | None = None) -> list[dict]:
    from vidtldr.data.registry import dataset_names

    names = list(datasets) if datasets else dataset_names()
    records = []
    for name in names:
        record = smoke_one(name, cache_dir, out_dir)
        print(summary_line(record), flush=True)
        records.append(record)
    return records
