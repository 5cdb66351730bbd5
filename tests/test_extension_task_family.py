"""The task and backbone-family contracts (docs/architecture.md, "A new task", "A new backbone
family"), shown the way a contributor uses them: in a copy of the package, add ONE task module under
vidtldr/tasks/ with ONE dataset YAML, and ONE family module under vidtldr/models/ with ONE model YAML,
nothing else; then the evaluation runs the new task on the new family (through the feature cache,
with a reducer), flops counts the new family's encoder from its architecture data, bench times
the encoder the family builds alone, and compare ranks reducers by the headline the task declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _package_copy import last_json, package_copy, run_in

import vidtldr

pytestmark = pytest.mark.slow

NEW_FAMILY = '''
"""A toy backbone family: our video ViT with the reducer hook, no text side, random weights."""
import dataclasses
from dataclasses import dataclass
from typing import Optional

from torch import nn

from vidtldr.models.config import VisionConfig
from vidtldr.models.family import BackboneFamily, register_family
from vidtldr.models.vit import VisionTransformer

SIZES = {"toy_small": dict(img_size=224, patch_size=32, width=32, depth=2, num_heads=2, num_frames=4)}


@dataclass(frozen=True)
class ToyArch:
    name: str
    vision: VisionConfig
    text = None
    embed_dim = None
    tokenizer = None

    def to_dict(self) -> dict:
        return {"family": "toyvit", "name": self.name, "vision": dataclasses.asdict(self.vision), "text": None}


class ToyModel(nn.Module):
    def __init__(self, arch: ToyArch, attention: str):
        super().__init__()
        self.cfg = arch
        self.vision_encoder = VisionTransformer(arch.vision, attention=attention)

    def set_attention(self, mode: str) -> None:
        self.vision_encoder.attention = mode

    def encode_vision(self, videos, reducer=None, trace=False, trace_source=False):
        return self.vision_encoder(videos, reducer=reducer, trace=trace, trace_source=trace_source)


@register_family("toyvit")
class ToyFamily(BackboneFamily):
    heads = ("vision",)

    def architecture(self, arch: str, heads: str, num_frames: Optional[int] = None) -> ToyArch:
        self.check_heads(heads, f"architecture {arch!r}")
        sizes = dict(SIZES[arch])
        if num_frames is not None:
            sizes["num_frames"] = int(num_frames)
        return ToyArch(arch, VisionConfig(**sizes))

    def build(self, arch_cfg: ToyArch, attention: str = "fused") -> ToyModel:
        return ToyModel(arch_cfg, attention).eval()

    def build_vision(self, arch_cfg: ToyArch, attention: str = "fused") -> VisionTransformer:
        return VisionTransformer(arch_cfg.vision, attention=attention)

    def load_weights(self, model, path, kind):
        raise NotImplementedError("the toy family has random weights only")
'''

MODEL_YAML = """# Toy family (extension-contract test): random weights, generated clips.
name: toyvit
family: toyvit
arch: toy_small
backbone: toyvit
init: random
seed: 0
data_source: tiny
checkpoint: null
tokenizer: null
checkpoints: {}
caps:
  num_frames: 4
"""

NEW_TASK = '''
"""A toy task: how many distinct videos, and the mean L2 norm of their pooled features."""
import torch

from vidtldr.tasks.base import Task, TaskResult, register_task


@register_task("toy_norms")
class ToyNorms(Task):
    readers = ("caption",)
    heads = "vision"
    trims_videos = True
    limit_unit = "videos"
    uses_text = False
    metric_columns = ("videos_scored", "pooled_norm")
    headline_metrics = ("pooled_norm",)   # what `vidtldr compare` ranks reducers by

    def table_row(self, metrics: dict) -> dict:
        return {k: metrics[k] for k in self.metric_columns if k in metrics}

    def run(self, job) -> TaskResult:
        names, paths = list(job.split.video_names), list(job.split.videos)

        def encode(frames):
            with torch.no_grad():
                out = job.model.encode_vision(frames, reducer=job.reducer)
            pooled = out.tokens.mean(dim=1)
            return [{"pooled": pooled[i].clone(), "token_counts": torch.tensor(out.token_counts)}
                    for i in range(frames.shape[0])]

        videos, skipped, decoded, cached = job.cached_videos(names, paths, encode)
        norms = torch.stack([v["pooled"] for v in videos.by_key.values()]).norm(dim=-1)
        counts = {"videos": len(videos.by_key), "videos_total": len(set(names)), "videos_decoded": decoded,
                  "videos_from_cache": cached}
        token_counts = [int(c) for c in next(iter(videos.by_key.values()))["token_counts"]]
        return TaskResult(metrics={"videos_scored": len(videos.by_key), "pooled_norm": round(float(norms.mean()), 4)},
                          counts=counts, token_counts=token_counts, timings={})
'''


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """A copy of the package with the new task module + dataset YAML and family module + model YAML."""
    msrvtt = (Path(vidtldr.__file__).parent / "configs" / "dataset" / "msrvtt.yaml").read_text()
    return package_copy(tmp_path_factory.mktemp("extended_task"), {
        "tasks/toy_norms.py": NEW_TASK, "models/toyvit.py": NEW_FAMILY, "configs/model/toyvit.yaml": MODEL_YAML,
        "configs/dataset/toy_msrvtt.yaml": msrvtt.replace("name: msrvtt", "name: toy_msrvtt").replace(
            "task: retrieval", "task: toy_norms")})


def test_eval_runs_the_new_task_on_the_new_family(extended, tmp_path):
    common = ("model=toyvit", "dataset=toy_msrvtt", "merge=tome", "merge.r=[20,10]", f"paths.cache={tmp_path / 'c'}")
    run_in(extended, "-m", "vidtldr.eval", *common, f"hydra.run.dir={tmp_path / 'a'}")
    first = json.loads((tmp_path / "a" / "record.json").read_text())
    assert first["status"] == "complete" and first["run"]["task"] == "toy_norms"
    assert first["resolved"]["family"] == "toyvit" and first["resolved"]["heads"] == "vision"
    assert first["metrics"]["videos_scored"] == 7  # the tiny MSRVTT split: 7 clips
    # 4 frames of 7x7 patches = 196 tokens; ToMe removes 20, then 10
    assert first["token_counts"] == [196, 176, 166]
    assert first["gflops"]["paper"] < first["gflops"]["base_paper"]  # counted from the family's vision data
    run_in(extended, "-m", "vidtldr.eval", *common, f"hydra.run.dir={tmp_path / 'b'}")
    again = json.loads((tmp_path / "b" / "record.json").read_text())
    assert again["counts"]["videos_from_cache"] == 7 and again["metrics"] == first["metrics"]


def test_flops_counts_the_new_family_and_traces_the_assembled_model(extended):
    args = ("-m", "vidtldr.flops", "model=toyvit", "dataset=toy_msrvtt", "merge=tome", "merge.r=[20,10]")
    report = last_json(run_in(extended, *args, "trace=true"))
    # entering block 0, after block 0, after block 1
    assert report["tokens_per_layer"] == [196, 176, 166] and report["arch"] == "toy_small"
    # the analytic count from the family's vision data = fvcore's trace of the family's model
    assert report["traced"]["exact"] is True
    assert report["traced"]["gflops_paper"] == pytest.approx(report["gflops_paper"], abs=1e-4)


def test_bench_times_the_encoder_the_new_family_builds_alone(extended):
    args = ("-m", "vidtldr.bench", "model=toyvit", "dataset=toy_msrvtt", "merge=tome", "merge.r=[20,10]",
            "reducers=[none,tome]", "baseline_r=[20,10]", "attentions=[fused]", "repeats=1", "device=cpu",
            "breakdown=false", "profile=false", "check_outputs=false", "write=false")
    result = last_json(run_in(extended, *args))
    rows = {row["merge"]: row for row in result["rows"]}
    assert set(rows) == {"none", "tome"} and all(row["model"] == "toyvit" for row in rows.values())
    assert (rows["none"]["final_tokens"], rows["tome"]["final_tokens"]) == (196, 166)  # 196 - 20 - 10


def test_compare_ranks_reducers_by_the_new_tasks_declared_headline(extended, tmp_path):
    args = ("-m", "vidtldr.compare", "model=toyvit", "dataset=toy_msrvtt", "budget.ratio=0.95", "compare.reducers=[tome]",
            "compare.time.repeats=0", "compare.plot=false", f"paths.cache={tmp_path / 'c'}", f"hydra.run.dir={tmp_path}/r")
    result = last_json(run_in(extended, *args))
    # (2 blocks: removing half the tokens in each still costs 0.86 of the unreduced model)
    assert result["metric"] == "pooled_norm" and [row["merge"] for row in result["rows"]] == ["tome"]
    assert result["rows"][0]["merge_r"] and "error" not in result["rows"][0]
    evaluated = json.loads((Path(result["record"]).parent / "rows" / "tome" / "record.json").read_text())
    assert result["rows"][0]["mean"] == evaluated["metrics"]["pooled_norm"]
