"""Whole-evaluation benchmark: the official ``pairwise`` ITM execution against the ``grouped`` engine.

``python -m vidtldr.bench_eval model=umt_b dataset=msrvtt [quick=true] [device=cuda precision=fp16]``

One small retrieval evaluation is generated and run end to end (:func:`vidtldr.run.runner.run`: decode,
vision encoder, text encoder, ITC, ITM re-ranking, metrics, ``record.json``) once per engine,
interleaved in one process, on the same random full-size weights:

* data in the dataset's own format: ``videos`` generated clips (``size`` x ``size`` pixels), each with
  ``texts_per_video`` captions of 4-15 words (MSRVTT's captions average about 9), so that every video
  has at least ``k_test`` (128) candidate texts; the dataset's frames and text length; the configured
  merge (vid-TLDR's published schedule by default); a vocabulary of the model's size is generated when
  the configured tokenizer is not available (random weights: only token counts matter);
* the feature cache is off, so both runs do all the work.

Reported per engine: seconds per stage, seconds per scored pair, GFLOPs, pairs; the ratios; whether
the two records' metrics and candidate sets are identical; the grouped engine re-run on the pairwise
run's inputs (same metrics? the largest ITM logit difference); peak
memory of ITM for two numbers of videos (the captured features tiled by reference); and a projection
of the full MSRVTT-1k evaluation (1,000 videos, 1,000 texts, k_test 128) from the measured unit costs,
counting 256,000 pairs for BOTH engines (no credit for shared pairs, the conservative case) and
excluding decoding. Results go to ``results/bench_eval[_<device>].md`` / ``.json`` (``_cuda`` etc. off
the CPU). The last line printed is one JSON object (``itm_pair_speedup``, ``eval_speedup_projected``,
``eval_speedup_measured``, ``metrics_identical``, ``max_itm_logit_diff``, ``pairs`` ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from vidtldr import jsonio
from vidtldr.analysis.bench.measure import peak_memory
from vidtldr.errors import ConfigError
from vidtldr.files import atomic_write_text
from vidtldr.provenance import machine

ENGINES = ("grouped", "pairwise")  # run order within a round (grouped first pays the warm-up)
FULL = {"videos": 1000, "texts": 1000, "k_test": 128}  # MSRVTT-1k
STAGES = ("decode", "vision", "text", "itc", "itm")
WORDS = ("a man woman person people is are playing talking walking running cooking singing dancing "
         "driving riding the car dog cat ball guitar kitchen street video game news show of in on with "
         "and his her their big small red blue green young old group two three water food room outside "
         "someone something girl boy kids crowd stage field music song about how to make shows").split()


# ----------------------------------------------------------------------------- generated inputs


def captions(n: int, seed: int) -> list[str]:
    """``n`` distinct captions of 4-15 words from a fixed word list (deterministic)."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 15)))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def write_vocab(path: Path, size: int) -> Path:
    """A BERT-layout vocabulary of exactly ``size`` entries ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
    [MASK] 103, then the caption words, then filler), for random-weight runs without a real one."""
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    entries = head + sorted(set(WORDS))
    if size < len(entries):
        raise ConfigError(f"bench_eval: model vocab_size {size} is smaller than the generated vocabulary "
                          f"({len(entries)} entries); set model.tokenizer=/path/to/vocab.txt")
    entries += [f"[filler{i}]" for i in range(size - len(entries))]
    atomic_write_text(path, "\n".join(entries) + "\n")
    return path


DATA_MARKER = "bench_data.json"


def write_dataset(root: Path, dataset_cfg: dict, videos: int, texts_per_video: int, frames: int, size: int,
                  seed: int) -> Path:
    """An MSRVTT-style data root: ``videos`` H.264 clips and one record per clip with its captions.
    A root that already holds a dataset made with the same parameters is reused as it is (so clips
    can be generated on one machine and the benchmark run on another, e.g. a GPU host without PyAV)."""
    if dataset_cfg.get("task") != "retrieval" or dataset_cfg.get("reader") != "caption":
        raise ConfigError(f"bench_eval: dataset={dataset_cfg.get('name')} is not a caption-reader retrieval "
                          "dataset (use msrvtt, msvd, lsmdc or their zero-shot configs)")
    params = {"dataset": dataset_cfg["name"], "annotation": dataset_cfg["annotation"], "video_dir":
              dataset_cfg["video_dir"], "videos": videos, "texts_per_video": texts_per_video, "frames": frames,
              "size": size, "seed": seed}
    marker = root / DATA_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    from vidtldr.data.tiny import write_clip

    video_dir = root / "videos" / dataset_cfg["video_dir"]
    texts = captions(videos * texts_per_video, seed)
    records = []
    for v in range(videos):
        name = f"bench_{v:04d}.mp4"
        write_clip(video_dir / name, frames, 8, size, size, clip_index=v)
        records.append({"video": name, "caption": texts[v * texts_per_video:(v + 1) * texts_per_video]})
    anno = root / "anno_downstream" / dataset_cfg["annotation"]
    atomic_write_text(anno, jsonio.dumps(records, indent=1))
    atomic_write_text(marker, jsonio.dumps(params))  # last: its presence means the dataset is complete
    return root


# ----------------------------------------------------------------------------- measurement


class CaptureITM:
    """Wraps the runner's ITM call for the duration of a run: keeps the score matrices (the record
    has metrics, not matrices), the process CPU seconds and peak memory of the ITM stage, and the
    inputs of the first pairwise call (model, texts, ITC, tokens) with its scores, on which the
    grouped engine is then run again: the engines compared on the very same inputs (separate CUDA
    runs need not encode bit for bit alike) and the memory probe."""

    def __init__(self, device: str):
        self.device = device
        self.calls: list[dict] = []
        self.probe_inputs: Optional[dict] = None

    @contextlib.contextmanager
    def installed(self):
        from vidtldr.run import runner_retrieval

        real = runner_retrieval.rerank

        def wrapper(model, i2t_emb, text, vision_tokens, **kwargs):
            cpu = time.process_time()
            with peak_memory(self.device) as mem:
                scores = real(model, i2t_emb, text, vision_tokens, **kwargs)
            self.calls.append({"scores": scores, "cpu_s": time.process_time() - cpu, "peak_mb": mem["peak_mb"],
                               "mean_text_tokens": round(float(text.mask.sum(1).float().mean()), 2),
                               "engine": kwargs.get("engine")})
            if self.probe_inputs is None and kwargs.get("engine") == "pairwise":
                self.probe_inputs = {"model": model, "text": text, "i2t_emb": i2t_emb, "kwargs": kwargs,
                                     "scores": scores,
                                     "tokens": [vision_tokens[i].clone() for i in range(len(vision_tokens))]}
            return scores

        runner_retrieval.rerank = wrapper
        try:
            yield self
        finally:
            runner_retrieval.rerank = real


def memory_probe(call: dict, device: str, precision: str, sizes: tuple[int, int]) -> list[dict]:
    """Peak memory of the grouped engine for two numbers of videos: the captured videos tiled by
    reference (so the tokens themselves add nothing), the same texts."""
    import torch

    from vidtldr.models.precision import autocast_context
    from vidtldr.tasks.itm import itm_rerank_grouped

    rows = []
    base_tokens, i2t = call["tokens"], call["i2t_emb"]
    for n in sizes:
        tokens = [base_tokens[i % len(base_tokens)] for i in range(n)]
        emb = i2t[torch.arange(n) % i2t.shape[0]]
        start = time.perf_counter()
        with peak_memory(device) as mem, autocast_context(device, precision):
            scores = itm_rerank_grouped(call["model"], emb, call["text"], tokens, k_test=call["kwargs"]["k_test"],
                                        chunk=call["kwargs"]["chunk"])
        rows.append({"videos": n, "texts": int(emb.shape[1]), "pairs": scores.stats.pairs,
                     "peak_mb": mem["peak_mb"], "seconds": time.perf_counter() - start})
    return rows


def same_input_comparison(call: dict, device: str, precision: str, chunk: int, txt2img: dict,
                          img2txt: dict) -> dict:
    """The grouped engine on the inputs of a pairwise run, against that run's scores and metrics."""
    from vidtldr.models.precision import autocast_context
    from vidtldr.tasks.itm import itm_rerank_grouped
    from vidtldr.tasks.metrics import retrieval_metrics

    pairwise = call["scores"]
    with autocast_context(device, precision):
        grouped = itm_rerank_grouped(call["model"], call["i2t_emb"], call["text"], call["tokens"],
                                     k_test=call["kwargs"]["k_test"], chunk=chunk)
    out = logit_comparison(pairwise, grouped)
    out["metrics_identical"] = (retrieval_metrics(pairwise.i2t, pairwise.t2i, txt2img, img2txt) ==
                                retrieval_metrics(grouped.i2t, grouped.t2i, txt2img, img2txt))
    return out


def logit_comparison(a, b) -> dict:
    """Candidates and ITM logits of two engines' scores."""
    import torch

    same = bool(torch.equal(a.i2t_topk, b.i2t_topk) and torch.equal(a.t2i_topk, b.t2i_topk)
                and torch.equal(a.i2t == -100, b.i2t == -100) and torch.equal(a.t2i == -100, b.t2i == -100))
    diff = max(float((a.i2t - b.i2t).abs().max()), float((a.t2i - b.t2i).abs().max()))
    return {"candidates_identical": same, "max_itm_logit_diff": diff}


# ----------------------------------------------------------------------------- the benchmark


def run_config(cfg, data_root: Path, work: Path, tokenizer: Optional[str], engine: str):
    """The evaluation config of one engine's run (copied from the benchmark's, which is an eval config)."""
    from omegaconf import OmegaConf

    run_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key in ("bench", "quick", "write", "out", "hydra"):
        run_cfg.pop(key, None)
    run_cfg.model.init = "random"
    run_cfg.data.source = "real"
    run_cfg.paths.data = str(data_root)
    run_cfg.paths.cache = str(work / "cache")
    run_cfg.paths.runs = str(work / "runs")
    run_cfg.cache.enabled = False
    run_cfg.eval.itm_engine = engine
    run_cfg.print_table = False
    run_cfg.logger.wandb.enabled = False
    if tokenizer is not None:
        run_cfg.model.tokenizer = tokenizer
    return run_cfg


def _tokenizer_or_generated(spec, work: Path) -> Optional[str]:
    """None when the tokenizer the run resolves to is found (the assembler's); else the path of a
    generated vocabulary of the architecture's size."""
    from vidtldr.run.assemble import tokenizer_vocab

    arch = spec.arch_config("retrieval")
    try:
        tokenizer_vocab(spec, arch)
        return None
    except ConfigError:
        return str(write_vocab(work / "vocab.txt", arch.text.vocab_size))


def unit_costs(record: dict, n_videos: int, n_texts: int) -> dict:
    sec = record["cost"]["seconds"]
    return {"vision_per_video_s": sec["vision"] / n_videos, "text_per_text_s": sec["text"] / n_texts,
            "itc_per_entry_s": sec["itc"] / (n_videos * n_texts),
            "itm_per_pair_s": sec["itm"] / max(1, record["cost"]["pairs"]["scored"])}


def project(units: dict, videos: int, texts: int, k_test: int) -> dict:
    """Seconds of an evaluation of ``videos`` x ``texts`` (decoding excluded), every candidate pair
    of both directions counted (no shared pairs)."""
    pairs = videos * min(k_test, texts) + texts * min(k_test, videos)
    out = {"vision": videos * units["vision_per_video_s"], "text": texts * units["text_per_text_s"],
           "itc": videos * texts * units["itc_per_entry_s"], "itm": pairs * units["itm_per_pair_s"]}
    out["total"] = sum(out.values())
    out["pairs"] = pairs
    return out


def run_bench(cfg, log=print) -> dict:
    import torch

    from vidtldr.run.runner import run

    from vidtldr.run.runspec import resolve

    b = cfg.bench
    quick = bool(cfg.get("quick", False))
    videos = int(b.quick_videos if quick else b.videos)
    spec = resolve(run_config(cfg, Path("."), Path("."), None, "grouped"))  # as each engine's run resolves
    k_test = spec.k_test  # capped as the run will
    texts_per_video = max(1, -(-int(b.min_candidates if b.min_candidates else k_test) // videos))
    n_texts = videos * texts_per_video
    frames = int(b.clip_frames)
    device = str(cfg.device)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vidtldr_bench_eval_") as tmp:
        work = Path(tmp)
        from vidtldr.config_utils import plain

        data_root = write_dataset(Path(b.data) if b.get("data") else work / "data", plain(cfg.dataset), videos,
                                  texts_per_video, frames, int(b.clip_size), int(cfg.seed))
        if b.get("generate_only"):
            log(f"generated the benchmark's data under {data_root}")
            return {}
        tokenizer = _tokenizer_or_generated(spec, work)
        capture = CaptureITM(device)
        records: dict[str, list[dict]] = {e: [] for e in ENGINES}
        captured: dict[str, list[dict]] = {e: [] for e in ENGINES}  # per run: scores, ITM CPU s, peak
        rounds = 1 if quick else int(b.rounds)
        warmup = bool(b.warmup) if b.warmup != "auto" else device.startswith("cuda")
        with capture.installed():
            if warmup:  # kernels, allocator and library handles warmed before anything is timed
                for engine in ENGINES:
                    log(f"warm-up: {engine} evaluation of one video (not timed)")
                    warm = run_config(cfg, data_root, work, tokenizer, engine)
                    warm.data.limit = 1
                    run(warm, work / f"warmup_{engine}", progress=False)
                capture.calls.clear()
                capture.probe_inputs = None
            for r in range(rounds):
                for engine in (ENGINES if r % 2 == 0 else ENGINES[::-1]):
                    log(f"round {r + 1}/{rounds}: {engine} evaluation ({videos} videos, {n_texts} texts)")
                    rec = run(run_config(cfg, data_root, work, tokenizer, engine), work / f"run_{r}_{engine}",
                              progress=False)
                    records[engine].append(rec)
                    captured[engine].append(capture.calls[-1])
                    log(f"  {engine}: " + ", ".join(f"{s} {rec['cost']['seconds'][s]:.1f}s" for s in STAGES))
        log("the grouped engine on the pairwise run's inputs")
        txt2img = {j: j // texts_per_video for j in range(n_texts)}
        img2txt = {i: list(range(i * texts_per_video, (i + 1) * texts_per_video)) for i in range(videos)}
        same = same_input_comparison(capture.probe_inputs, device, spec.precision,
                                     spec.settings.itm_group_batch, txt2img, img2txt)
        probe = []
        if bool(b.memory_probe):
            sizes = (videos, 2 * videos)
            log(f"memory probe: grouped ITM on {sizes[0]} and {sizes[1]} videos")
            probe = memory_probe(capture.probe_inputs, device, spec.precision, sizes)
        capture.probe_inputs = None
    return summarize(cfg, spec, records, captured, probe, same, videos=videos, texts=n_texts, k_test=k_test, quick=quick,
                     load=(load_before, os.getloadavg()), threads=torch.get_num_threads())


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))


def summarize(cfg, spec, records: dict, captured: dict, probe: list, same: dict, *, videos: int, texts: int, k_test: int,
              quick: bool, load: tuple, threads: int) -> dict:
    engines = {}
    for engine, recs in records.items():
        seconds = {s: _median([r["cost"]["seconds"][s] for r in recs]) for s in STAGES}
        rec = recs[0]
        median_rec = {"cost": {**rec["cost"], "seconds": seconds}}
        units = unit_costs(median_rec, videos, texts)
        engines[engine] = {
            "seconds": seconds, "seconds_excl_decode": sum(seconds[s] for s in STAGES if s != "decode"),
            "itm_cpu_s": _median([c["cpu_s"] for c in captured[engine]]),
            "itm_peak_mb": _median([c["peak_mb"] for c in captured[engine] if c["peak_mb"] is not None] or [0.0]),
            "pairs": rec["cost"]["pairs"]["scored"], "written": rec["cost"]["pairs"]["written"],
            "gflops": rec["cost"]["gflops"], "units": units,
            "projected_msrvtt_1k": project(units, FULL["videos"], FULL["texts"], FULL["k_test"]),
            "runs": len(recs), "seconds_per_run": [r["cost"]["seconds"] for r in recs]}
    p, g = engines["pairwise"], engines["grouped"]
    compare = [logit_comparison(cp["scores"], cg["scores"]) for cp, cg in zip(captured["pairwise"], captured["grouped"], strict=True)]
    metrics_identical = all(rp["metrics"] == rg["metrics"] for rp in records["pairwise"] for rg in records["grouped"])
    first = records["grouped"][0]
    summary = {
        "itm_pair_speedup": p["units"]["itm_per_pair_s"] / g["units"]["itm_per_pair_s"],
        "itm_pair_flop_ratio": (p["gflops"]["itm"]["paper"] / p["pairs"]) / (g["gflops"]["itm"]["paper"] / g["pairs"]),
        "eval_speedup_projected": p["projected_msrvtt_1k"]["total"] / g["projected_msrvtt_1k"]["total"],
        "eval_speedup_measured": p["seconds_excl_decode"] / g["seconds_excl_decode"],
        "metrics_identical": metrics_identical,
        "candidates_identical": all(c["candidates_identical"] for c in compare),
        "max_itm_logit_diff": same["max_itm_logit_diff"],
        "same_inputs": {"metrics_identical": same["metrics_identical"],
                        "candidates_identical": same["candidates_identical"]},
        "max_itm_logit_diff_between_runs": max(c["max_itm_logit_diff"] for c in compare),
        "pairs": {"pairwise": p["pairs"], "grouped": g["pairs"]},
    }
    return {
        "summary": summary, "engines": engines, "memory_probe": probe, "quick": quick,
        "setup": {"model": spec.model, "dataset": spec.dataset, "merge": spec.merge,
                  "schedule": first["run"]["schedule_spec"], "videos": videos, "texts": texts, "k_test": k_test,
                  "num_frames": first["resolved"]["num_frames"], "max_txt_l": first["resolved"]["max_txt_l"],
                  "vision_tokens": first["token_counts"][-1] if first["token_counts"] else None,
                  "mean_text_tokens": captured["grouped"][0]["mean_text_tokens"],
                  "device": spec.device, "precision": spec.precision, "itm_batch": spec.settings.itm_batch,
                  "itm_group_batch": spec.settings.itm_group_batch,
                  "weights": "random (seeded), full size", "clips": f"{cfg.bench.clip_size}x{cfg.bench.clip_size}, "
                                                                     f"{cfg.bench.clip_frames} frames"},
        "machine": {**machine(str(cfg.device)), "torch_threads": threads,
                    "loadavg_before": [round(x, 2) for x in load[0]], "loadavg_after": [round(x, 2) for x in load[1]]},
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def output_paths(out_dir: str, device: str) -> tuple[Path, Path]:
    """``bench_eval.md/.json`` on the CPU, ``bench_eval_<device type>.*`` elsewhere."""
    import torch

    kind = torch.device(device).type
    stem = "bench_eval" if kind == "cpu" else f"bench_eval_{kind}"
    return Path(out_dir) / f"{stem}.md", Path(out_dir) / f"{stem}.json"


def check_options(cfg) -> None:
    """The ``bench.*`` settings, before data is generated or a model built (``bench.videos=abc`` was
    a traceback; ``bench.warmup=maybe`` meant yes)."""
    from vidtldr.config_values import check_settings, integer, shown

    check_settings(cfg)
    b = cfg.bench
    for key, low in (("videos", 1), ("quick_videos", 1), ("rounds", 1), ("clip_size", 32), ("clip_frames", 1)):
        integer(f"bench.{key}", b[key], low=low)
    if b.get("min_candidates") is not None:
        integer("bench.min_candidates", b.min_candidates, low=1)
    if not isinstance(b.warmup, bool) and b.warmup != "auto":
        raise ConfigError(f"bench.warmup={shown(b.warmup)}: accepted values: auto, true, false")


def main_cli(cfg) -> dict:
    from vidtldr.analysis.bench.evaluation_render import render_md
    from vidtldr.models.precision import autocast_context, resolve_device

    resolve_device(str(cfg.device))
    autocast_context(str(cfg.device), str(cfg.precision))  # a clear error for a bad precision, now
    check_options(cfg)
    res = run_bench(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if not res:  # bench.generate_only
        return res
    write = cfg.get("write")
    if write is None:
        write = not res["quick"]
    if write:
        md, js = output_paths(str(cfg.out), str(cfg.device))
        md.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(js, jsonio.dumps(res, indent=1) + "\n")
        atomic_write_text(md, render_md(res))
        print(f"wrote {md} and {js}", file=sys.stderr)
    print(render_md(res))
    print(jsonio.dumps(res["summary"]))
    return res


def main() -> None:
    from vidtldr.entry import hydra_entry

    hydra_entry("bench_eval", "vidtldr.bench_eval", main_cli)


__all__ = ["captions", "write_vocab", "write_dataset", "project", "unit_costs", "run_bench", "output_paths",
           "main_cli", "main"]


if __name__ == "__main__":
    main()
