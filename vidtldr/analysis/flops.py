"""FLOPs of the UMT vision encoder (and of what the paper leaves out), in two conventions.

**Paper convention** (``gflops_paper``): what the official ``utils/utils.py: flops()`` reports, i.e.
fvcore's count of the vision encoder alone, batch 1, input ``[1, T, 3, 224, 224]``. fvcore counts
one multiply-add as one "flop" and only these operators: convolution, linear, matmul (q.k^T, A.v
and vid-TLDR's similarity m_A.m_B^T) and layer norm (5 per element with affine; see
``fvcore/nn/jit_handles.py: norm_flop_counter``). Softmax, log, GELU, residual adds, sorting,
gathers and scatters count 0. So the paper's "GFLOPs" are really GMACs plus a little.

**True FLOPs** (``gflops_true``): every multiply-add is two flops, and the arithmetic fvcore ignores
is counted with the per-element costs in :data:`TRUE_COST` (one flop per add, multiply, divide or
transcendental such as exp/log/erf; comparisons, sorting, gathers, scatters-by-copy and casts are
free). The rules are arbitrary in their details but fixed and documented; matmul-like work is
>97 % of the total anyway.

Two independent counts are kept honest against each other:

* :func:`vision_cost` -- an analytic formula, a pure function of architecture numbers and the
  per-block token counts (no torch needed);
* :func:`traced_vision_cost` -- fvcore's trace of the real module (``vidtldr.models``), with a
  handle for ``aten::scaled_dot_product_attention`` (fvcore has none: a fused attention would
  otherwise count 0).

Costs outside the encoder, reported as separate columns because the paper omits them:
text encoder per query (:func:`text_query_cost`), ITM re-ranking of ``k_test`` candidates for one
query (:func:`itm_rerank_cost`, which depends on the merged vision token count) and the QA question
encoder + answer decoder for one question (:func:`qa_cost`).

Command line (same Hydra groups as the evaluation)::

    python -m vidtldr.analysis.flops model=umt_b dataset=msrvtt merge=vidtldr   # published schedule
    python -m vidtldr.analysis.flops model=umt_l dataset=didemo merge.r=[800,100]
    python -m vidtldr.analysis.flops model=umt_b merge=none
    python -m vidtldr.analysis.flops table=true          # regenerates results/flops.md

The last line printed is one JSON object (``gflops_paper``, ``gflops_true``, ``tokens_per_layer``...).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from vidtldr.cost.ledger import FVCORE_LN_PER_ELEM, TRUE_COST, round1
from vidtldr.cost.text import TextDims, itm_rerank_cost, qa_cost, text_dims, text_query_cost
from vidtldr.cost.vision import VisionCost, VisionDims, backbone_vision_dims, reducer_cost, vision_cost, vision_dims
from vidtldr.errors import ConfigError, VidtldrError, cli_guard
from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule

# ----------------------------------------------------------------------------------------------
# Published reference numbers (paper_numbers.md sections 2, 3; spec section 2.9)
# ----------------------------------------------------------------------------------------------

#: Recounted GFLOPs (1 decimal) of every published schedule, keyed like VIDTLDR_PRESETS.
PUBLISHED_GFLOPS: dict[tuple[str, str], float] = {
    ("msrvtt", "umt_b"): 178.0, ("msrvtt", "umt_l"): 543.4,
    ("msvd", "umt_b"): 181.3, ("msvd", "umt_l"): 528.6,
    ("anet", "umt_b"): 227.6, ("anet", "umt_l"): 563.1,
    ("didemo", "umt_b"): 212.8, ("didemo", "umt_l"): 559.0,
    ("lsmdc", "umt_b"): 206.2, ("lsmdc", "umt_l"): 583.7,
    ("ssv2_label", "umt_b"): 212.9, ("ssv2_label", "umt_l"): 610.9,
    ("ssv2_template", "umt_b"): 203.7, ("ssv2_template", "umt_l"): 615.7,
    ("msrvtt_qa", "umt_b"): 188.5, ("msrvtt_qa", "umt_l"): 569.8,
    ("msvd_qa", "umt_b"): 188.5, ("msvd_qa", "umt_l"): 569.8,
}
#: No-reduction baselines by (backbone, frames).
PUBLISHED_BASELINES: dict[tuple[str, int], float] = {
    ("umt_b", 12): 303.3, ("umt_l", 12): 984.6, ("umt_b", 4): 78.5, ("umt_l", 4): 267.8,
}
#: vid-TLDR GFLOPs printed in the paper's Figure 1 (UMT-B); two differ from their recount.
FIGURE1_GFLOPS: dict[str, float] = {
    "msrvtt": 178.0, "msvd": 182.2, "anet": 227.6, "didemo": 183.6, "lsmdc": 206.2,
    "ssv2_label": 212.9, "ssv2_template": 203.7, "msrvtt_qa": 188.5, "msvd_qa": 188.5,
}
#: ToMe GFLOPs printed in Figure 1 (UMT-B).
FIGURE1_TOME_GFLOPS: dict[str, float] = {
    "msrvtt": 231.4, "msvd": 218.7, "anet": 236.8, "didemo": 223.9, "lsmdc": 223.2,
    "ssv2_label": 232.2, "ssv2_template": 241.4, "msrvtt_qa": 241.4, "msvd_qa": 232.2,
}
DATASET_LABEL = {
    "msrvtt": "MSRVTT ret", "msvd": "MSVD ret", "anet": "ActivityNet ret", "didemo": "DiDeMo ret",
    "lsmdc": "LSMDC ret", "ssv2_label": "SSv2-label ret", "ssv2_template": "SSv2-template ret",
    "msrvtt_qa": "MSRVTT-QA", "msvd_qa": "MSVD-QA",
}
# ----------------------------------------------------------------------------------------------
# From the model package's configs and reducers
# ----------------------------------------------------------------------------------------------

def dims_from_config(cfg) -> tuple[VisionDims, TextDims]:
    """:class:`VisionDims`/:class:`TextDims` of a ``vidtldr.models.config.UMTConfig``."""
    return vision_dims(cfg), text_dims(cfg)


# ----------------------------------------------------------------------------------------------
# Traced count (fvcore on the real module)
# ----------------------------------------------------------------------------------------------

def _sdpa_flop_jit(inputs, outputs) -> Counter:
    """fvcore handle for ``aten::scaled_dot_product_attention``: q.k^T plus A.v multiply-adds,
    counted under "attention" (the materialised execution counts the same work as "matmul")."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    *batch, n_q, d = q
    n_k, d_v = k[-2], v[-1]
    lead = math.prod(batch)
    return Counter({"attention": lead * n_q * n_k * (d + d_v)})


def _counting_analysis(module, args):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, args)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


@dataclass
class TracedCount:
    total: int
    by_operator: dict[str, int]
    token_counts: list[int]

    def merged_attention(self) -> dict[str, int]:
        """``by_operator`` with the fused "attention" folded into "matmul" (paper view)."""
        out = dict(self.by_operator)
        out["matmul"] = out.get("matmul", 0) + out.pop("attention", 0)
        return out


@contextlib.contextmanager
def _quiet_trace():
    """fvcore traces with torch.jit, which torch 2.x marks deprecated and which warns about every
    Python-side shape computation; neither says anything about the count."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


@contextlib.contextmanager
def _untraced_random_draws():
    """Random drop seeds one generator per sample from Python integers computed from the tokens'
    shape and values, which the JIT tracer cannot follow. Its index draw counts no operator for
    fvcore anyway, so while tracing it is run with the tracer paused (its indices enter the graph as
    constants); the gather that applies them stays traced, so nothing upstream is pruned."""
    import torch

    from vidtldr.reduce import random_drop

    original = random_drop.per_sample_keep_indices

    def paused(*args, **kwargs):
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return original(*args, **kwargs)
        finally:
            torch._C._set_tracing_state(state)

    random_drop.per_sample_keep_indices = paused
    try:
        yield
    finally:
        random_drop.per_sample_keep_indices = original


def traced_vision_cost(vision_cfg, reducer=None, attention: str = "fused", batch: int = 1,
                       seed: int = 0) -> TracedCount:
    """fvcore's count of one forward of the real ``VisionTransformer`` (random weights).

    ``attention="fused"`` traces SDPA / query-blocked attention (counted by the added handle),
    ``"materialized"`` the official explicit map; both must give the same total. The reducer's
    similarity matmul is counted as fvcore's "matmul"; :func:`compare` splits it off analytically.
    """
    import torch

    from vidtldr.models.vit import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(vision_cfg, attention=attention).eval()
    seen: dict = {}

    class _Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = model

        def forward(self, videos):
            out = self.vit(videos, reducer=reducer)
            seen["counts"] = list(out.state.token_counts)
            return (out.tokens,) if out.pooled is None else (out.tokens, out.pooled)

    size = vision_cfg.img_size
    videos = torch.randn(batch, vision_cfg.num_frames, 3, size, size)
    with torch.no_grad(), _untraced_random_draws(), _quiet_trace():
        analysis = _counting_analysis(_Encoder().eval(), (videos,))
        by_op = dict(analysis.by_operator())
        total = int(analysis.total())
    return TracedCount(total=total, by_operator={k: int(v) for k, v in by_op.items()},
                       token_counts=seen.get("counts", []))


def traced_extra_costs(umt_cfg, spec: "RunSpec", vision_tokens: int, seed: int = 0) -> dict:
    """fvcore counts (paper convention) of the costs outside the encoder, on the real text modules
    (random weights): text-mode encoder + ITC projection for one caption and one ITM pair (times
    ``k_test``) for retrieval; question encoder + first-token pass + ``k_test`` candidates for QA."""
    import torch

    from vidtldr.models.umt import build_model

    torch.manual_seed(seed)
    model = build_model(umt_cfg)
    width = umt_cfg.vision.width

    class _Call(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.model = model
            self.fn = fn

        def forward(self, *args):
            return self.fn(*args)

    def traced(fn, *args) -> int:
        with torch.no_grad(), _quiet_trace():
            return int(_counting_analysis(_Call(fn), args).total())

    def ids(rows: int, length: int):
        return torch.randint(5, max(6, umt_cfg.text.vocab_size - 1), (rows, length))

    vision = torch.randn(1, vision_tokens, width)
    out = {}
    if spec.task == "qa":
        q_ids, q_mask = ids(1, spec.max_q_len), torch.ones(1, spec.max_q_len, dtype=torch.long)
        with torch.no_grad():
            states = model.encode_question(vision, q_ids, q_mask)
        k = spec.k_test
        a_ids, a_mask = ids(k, spec.max_a_len), torch.ones(k, spec.max_a_len, dtype=torch.long)
        total = traced(lambda v, i, m: model.encode_question(v, i, m), vision, q_ids, q_mask)
        total += traced(lambda q, m: model.start_logits(q, m, 2), states, q_mask)
        total += traced(lambda a, am, q, m: model.answer_loss(a, am, q, m), a_ids, a_mask,
                        states.repeat(k, 1, 1), q_mask.repeat(k, 1))
        out["qa_per_question"] = total
    else:
        t_ids, t_mask = ids(1, spec.max_txt_l), torch.ones(1, spec.max_txt_l, dtype=torch.long)
        out["text_per_query"] = traced(lambda i, m: model.itc_text(model.encode_text(i, m)), t_ids, t_mask)
        with torch.no_grad():
            text_states = model.encode_text(t_ids, t_mask)
        pair = traced(lambda t, m, v: model.itm_logit(t, m, v), text_states, t_mask, vision)
        out["itm_rerank_per_query"] = pair * spec.k_test
    return out


def compare(analytic: VisionCost, traced: TracedCount) -> dict:
    """Cross-check: per fvcore operator, analytic minus traced (all zero when they agree).

    The analytic "attention" (q.k^T, A.v) and "match" categories are both "matmul" for fvcore,
    unless the trace ran fused attention (then attention is the SDPA handle's category)."""
    a = Counter(analytic.paper_by_op)
    a["matmul"] += a.pop("match", 0)
    t = Counter(traced.merged_attention())
    ops = sorted(set(a) | set(t))
    diff = {op: int(a.get(op, 0) - t.get(op, 0)) for op in ops}
    return {"exact": all(v == 0 for v in diff.values()) and analytic.tokens_per_layer == traced.token_counts,
            "diff_by_op": {k: v for k, v in diff.items() if v},
            "analytic": analytic.paper, "traced": traced.total}


# ----------------------------------------------------------------------------------------------
# Configuration -> what to count (shared with vidtldr.analysis.bench)
# ----------------------------------------------------------------------------------------------

@dataclass
class RunSpec:
    """Everything a FLOP count or a benchmark needs from a composed Hydra config."""

    model: str                 # config name: umt_b | umt_l | tiny
    arch: str                  # architecture file: umt_b16 | umt_l16 | tiny
    backbone: str
    dataset: str
    task: str
    num_frames: int
    merge: str
    schedule: list             # full per-block schedule (empty for merge=none)
    merge_kwargs: dict = field(default_factory=dict)
    k_test: int = 128
    max_txt_l: int = 32
    max_q_len: int = 25
    max_a_len: int = 5

    def umt_config(self):
        from vidtldr.models.config import load_architecture

        return load_architecture(self.arch, task=self.task, num_frames=self.num_frames)

    def reducer(self):
        """A fresh reducer instance (None for merge=none)."""
        if self.merge == "none":
            return None
        from vidtldr.reduce import build_reducer

        return build_reducer(self.merge, list(self.schedule), **self.merge_kwargs)


def _cap(value, caps: dict, key: str):
    cap = caps.get(key) if caps else None
    return value if cap is None or value is None else min(int(value), int(cap))


def resolve_spec(cfg, merge_override: Optional[dict] = None) -> RunSpec:
    """Resolve a composed config (model / dataset / merge groups + top-level options) the way the
    evaluation does: frame count and text lengths from the dataset, capped by the model; the
    schedule from ``merge.r`` (``published`` = the model's own preset if it has one, else the
    official README schedule for the dataset and backbone)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from vidtldr.models.config import load_architecture

    model, data = cfg.model, cfg.dataset
    merge = OmegaConf.to_container(cfg.merge, resolve=False) if merge_override is None else dict(merge_override)
    caps = model.get("caps")
    caps = OmegaConf.to_container(caps, resolve=True) if OmegaConf.is_config(caps) else dict(caps or {})
    frames = cfg.get("num_frames") or (cfg.get("eval") or {}).get("num_frames") or data.num_frames
    frames = _cap(int(frames), caps, "num_frames")
    task = data.task
    arch = load_architecture(model.arch, task=task, num_frames=frames)
    depth = arch.vision.depth
    name = merge.get("name", "none")
    r = merge.get("r")
    if r == "???":
        raise ConfigError(f"merge={name} has no default schedule: give one, e.g. merge.r=100 or merge.r=[600,200,100]")
    if name == "none":
        schedule: list = []
    else:
        if r == "published" and model.get("published_schedule") is not None:
            r = OmegaConf.to_container(model.published_schedule)  # the model's own preset (tiny)
        schedule = parse_schedule(r, depth, dataset=data.name, backbone=model.backbone, reducer=name)
    extra = {k: v for k, v in merge.items() if k not in ("name", "r")}
    try:
        k_test = cfg.get("k_test") or (cfg.get("eval") or {}).get("k_test") or data.k_test
    except MissingMandatoryValue:
        k_test = data.k_test
    return RunSpec(
        model=model.name, arch=model.arch, backbone=model.backbone, dataset=data.name, task=task,
        num_frames=frames, merge=name, schedule=list(schedule), merge_kwargs=extra,
        k_test=_cap(int(k_test), caps, "k_test"),
        max_txt_l=_cap(data.get("max_txt_l") or 32, caps, "max_txt_l"),
        max_q_len=_cap(data.get("max_q_len") or 25, caps, "max_q_len"),
        max_a_len=_cap(data.get("max_a_len") or 5, caps, "max_a_len"),
    )


# ----------------------------------------------------------------------------------------------
# One configuration: report
# ----------------------------------------------------------------------------------------------

def extra_costs(text: TextDims, spec: RunSpec, vision_tokens: int) -> dict:
    """Per-query costs outside the vision encoder, both conventions, in GFLOPs."""
    out = {}
    if spec.task == "qa":
        qa = qa_cost(text, vision_tokens, spec.k_test, spec.max_q_len, spec.max_a_len)
        out["qa_per_question"] = {"gflops_paper": qa.paper_total / 1e9, "gflops_true": qa.true_total / 1e9,
                                  "k_test": spec.k_test, "max_q_len": spec.max_q_len, "max_a_len": spec.max_a_len}
    else:
        tq = text_query_cost(text, spec.max_txt_l)
        itm = itm_rerank_cost(text, spec.max_txt_l, vision_tokens, spec.k_test)
        out["text_per_query"] = {"gflops_paper": tq.paper_total / 1e9, "gflops_true": tq.true_total / 1e9,
                                 "max_txt_l": spec.max_txt_l}
        out["itm_rerank_per_query"] = {"gflops_paper": itm.paper_total / 1e9, "gflops_true": itm.true_total / 1e9,
                                       "k_test": spec.k_test, "vision_tokens": vision_tokens}
    return out


def count(spec: RunSpec, trace: bool = True, attention: str = "fused", batch: int = 1) -> dict:
    """The full report of one configuration (the JSON the command line prints last)."""
    cfg = spec.umt_config()
    vision, text = dims_from_config(cfg)
    reducer = spec.reducer()
    cost = reducer_cost(vision, spec.num_frames, reducer, batch=batch)
    report = {
        "model": spec.model, "arch": spec.arch, "dataset": spec.dataset, "task": spec.task,
        "merge": spec.merge, "r": list(spec.schedule), "num_frames": spec.num_frames, "batch": batch,
        "input_shape": [batch, spec.num_frames, 3, vision.img_size, vision.img_size],
        "tokens_per_layer": cost.tokens_per_layer,
        "removed_per_layer": cost.removed,
        "gflops_paper": round(cost.gflops_paper, 4),
        "gflops_paper_1dp": round1(cost.gflops_paper),
        "gflops_true": round(cost.gflops_true, 4),
        "paper_by_op_g": {k: round(v / 1e9, 4) for k, v in sorted(cost.paper_by_op.items())},
        "true_by_op_g": {k: round(v / 1e9, 4) for k, v in sorted(cost.true_by_op.items())},
        "paper_per_block_g": [round(v / 1e9, 4) for v in cost.paper_per_block],
        "extra": extra_costs(text, spec, cost.tokens_per_layer[-1]),
    }
    key = (spec.dataset, spec.backbone)
    if spec.merge == "vidtldr" and spec.num_frames == 12 and key in PUBLISHED_GFLOPS \
            and list(spec.schedule) == parse_schedule(VIDTLDR_PRESETS[key], vision.depth):
        report["published"] = {"gflops": PUBLISHED_GFLOPS[key], "figure1": FIGURE1_GFLOPS.get(spec.dataset)
                               if spec.backbone == "umt_b" else None}
    elif spec.merge == "none" and (spec.backbone, spec.num_frames) in PUBLISHED_BASELINES:
        report["published"] = {"gflops": PUBLISHED_BASELINES[(spec.backbone, spec.num_frames)]}
    if trace:
        traced = traced_vision_cost(cfg.vision, spec.reducer(), attention=attention, batch=batch)
        check = compare(cost, traced)
        report["traced"] = {"gflops_paper": round(traced.total / 1e9, 4), "attention": attention,
                            "exact": check["exact"], "diff_by_op": check["diff_by_op"]}
        for name, total in traced_extra_costs(cfg, spec, cost.tokens_per_layer[-1]).items():
            entry = report["extra"][name]
            entry["traced_gflops_paper"] = total / 1e9
            entry["traced_exact"] = abs(total - entry["gflops_paper"] * 1e9) < 0.5
    return report


def format_report(rep: dict) -> str:
    lines = []
    sched = rep["r"]
    nz = len(sched) - next((i for i, e in enumerate(reversed(sched)) if e), len(sched))
    shown = "none" if not any(sched) else "[" + ", ".join(str(e) for e in sched[:nz]) + (", 0, ..." if nz < len(sched) else "") + "]"
    lines.append(f"model={rep['model']} ({rep['arch']})  dataset={rep['dataset']} ({rep['task']})  "
                 f"merge={rep['merge']}  r={shown}")
    lines.append(f"input {rep['input_shape']}  tokens: " + " -> ".join(
        str(t) for i, t in enumerate(rep["tokens_per_layer"]) if i == 0 or t != rep["tokens_per_layer"][i - 1]))
    lines.append("")
    lines.append(f"vision encoder, paper convention (fvcore, multiply-add = 1): {rep['gflops_paper']:.2f} GFLOPs "
                 f"-> {rep['gflops_paper_1dp']:.1f}")
    lines.append("  " + "  ".join(f"{k} {v:.2f}" for k, v in rep["paper_by_op_g"].items()))
    if "published" in rep:
        pub = rep["published"]
        ok = "matches" if pub["gflops"] == rep["gflops_paper_1dp"] else "DIFFERS"
        extra = ""
        if pub.get("figure1") is not None and pub["figure1"] != pub["gflops"]:
            extra = f"; the paper's Figure 1 prints {pub['figure1']:.1f} (differs from its own schedule)"
        lines.append(f"  published recount {pub['gflops']:.1f}: {ok}{extra}")
    if "traced" in rep:
        tr = rep["traced"]
        lines.append(f"  traced with fvcore ({tr['attention']} attention): {tr['gflops_paper']:.2f} "
                     + ("(analytic == traced, exact)" if tr["exact"] else f"MISMATCH {tr['diff_by_op']}"))
    lines.append(f"vision encoder, true FLOPs (multiply-add = 2, elementwise counted): {rep['gflops_true']:.2f} GFLOPs")
    lines.append("")
    lines.append("per block (paper convention): block  tokens_in  removed  GFLOPs")
    for i, g in enumerate(rep["paper_per_block_g"]):
        lines.append(f"  {i:5d}  {rep['tokens_per_layer'][i]:9d}  {rep['removed_per_layer'][i]:7d}  {g:7.2f}")
    lines.append(f"  final tokens {rep['tokens_per_layer'][-1]}")
    lines.append("")
    lines.append("not in the paper's count (per query, GFLOPs paper / true):")
    for name, e in rep["extra"].items():
        detail = ", ".join(f"{k}={v}" for k, v in e.items() if not k.startswith(("gflops", "traced")))
        if "traced_exact" in e:
            detail += ", traced " + ("exact" if e["traced_exact"] else f"MISMATCH {e['traced_gflops_paper']:.3f}")
        lines.append(f"  {name:22s} {e['gflops_paper']:9.2f} / {e['gflops_true']:9.2f}   ({detail})")
    return "\n".join(lines)


def main_cli(cfg) -> dict:
    if cfg.get("table"):
        return write_table(Path(cfg.table_out), Path(cfg.table_json) if cfg.get("table_json") else None,
                           trace=bool(cfg.trace))
    spec = resolve_spec(cfg)
    rep = count(spec, trace=bool(cfg.trace), attention=str(cfg.attention), batch=int(cfg.batch))
    print(format_report(rep))
    print(json.dumps(rep))
    return rep


# ----------------------------------------------------------------------------------------------
# Config composition outside a running Hydra app (table, bench, tests)
# ----------------------------------------------------------------------------------------------

from vidtldr.config_utils import CONFIG_DIR  # noqa: E402


def compose(config_name: str, overrides: Sequence[str] = ()):
    """Compose ``configs/<config_name>.yaml`` with overrides, inside or outside a Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


# ----------------------------------------------------------------------------------------------
# results/flops.md
# ----------------------------------------------------------------------------------------------

def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary committed files
    os.replace(tmp, path)


def _schedule_str(schedule: Sequence) -> str:
    nz = [e for e in schedule]
    while nz and not nz[-1]:
        nz.pop()
    return ",".join(str(e) for e in nz) if nz else "-"


def _versions() -> str:
    import importlib.metadata as md

    parts = []
    for pkg in ("torch", "fvcore"):
        try:
            parts.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            parts.append(f"{pkg} (not installed)")
    return ", ".join(parts)


def table_rows(trace: bool = True, progress=None) -> dict:
    """Every published schedule, the no-reduction baselines, and the ToMe Figure-1 check."""
    rows, baselines = [], []
    for (dataset, backbone) in VIDTLDR_PRESETS:
        spec = resolve_spec(compose("flops", [f"model={backbone}", f"dataset={dataset}", "merge=vidtldr"]))
        rep = count(spec, trace=trace)
        if progress:
            progress(f"{dataset}/{backbone}: {rep['gflops_paper']:.2f}")
        rows.append(rep)
    for backbone in ("umt_b", "umt_l"):
        for dataset in ("msrvtt", "msrvtt_zs"):
            spec = resolve_spec(compose("flops", [f"model={backbone}", f"dataset={dataset}", "merge=none"]))
            rep = count(spec, trace=trace)
            if progress:
                progress(f"baseline {backbone} {spec.num_frames} frames: {rep['gflops_paper']:.2f}")
            baselines.append(rep)
    from vidtldr.cost.vision import ReducerTraits
    from vidtldr.reduce.schedule import TOME_PRESETS
    from vidtldr.reduce.tome import ToMe

    # ToMe proper matches on head-mean keys; the paper's Figure 1 looks counted with a full-width
    # (hidden-state) similarity, as vid-TLDR's matcher has.
    on_hidden = ReducerTraits(need=None, match_on="hidden", tracks_sizes=True)
    vision = backbone_vision_dims("umt_b16")

    def gflops(r: int, reducer) -> float:
        return vision_cost(vision, 12, [r] * vision.depth, reducer=reducer).gflops_paper

    tome = []
    for dataset, g in FIGURE1_TOME_GFLOPS.items():
        preset = TOME_PRESETS.get(dataset)
        tome.append({
            "dataset": dataset, "figure1": g, "preset_r": preset,
            "keys_metric": round(gflops(preset, ToMe), 2) if preset else None,
            "hidden_metric": round(gflops(preset, on_hidden), 2) if preset else None,
            "constant_r_fits_hidden": [r for r in range(1, 200) if round1(gflops(r, on_hidden)) == g],
            "constant_r_fits_keys": [r for r in range(1, 200) if round1(gflops(r, ToMe)) == g],
        })
    return {"schedules": rows, "baselines": baselines, "tome_figure1": tome}


def render_table(data: dict, traced: bool) -> str:
    from vidtldr.report.results import BACKBONE_LABEL

    L = []
    L.append("# GFLOPs of the UMT vision encoder, paper convention and true FLOPs")
    L.append("")
    L.append("Generated by `make flops` (`python -m vidtldr.flops table=true`) from `vidtldr/analysis/flops.py`; "
             "do not edit by hand.")
    L.append(f"Environment: {_versions()}.")
    L.append("")
    L.append("**Paper convention** (`GFLOPs`): fvcore's count of the vision encoder only, batch 1, "
             "input `[1, T, 3, 224, 224]`, one multiply-add = 1 flop; counted operators: conv, linear, "
             "matmul (q.k^T, A.v, vid-TLDR's similarity m_A.m_B^T at merging blocks), layer norm "
             f"({FVCORE_LN_PER_ELEM} per element). **True** = every multiply-add as 2 flops plus the "
             "arithmetic fvcore ignores (bias, softmax, GELU, residual adds, proportional-attention bias, "
             "saliency, merging; rules in `vidtldr.cost.ledger.TRUE_COST`).")
    if traced:
        L.append("**Traced** = fvcore run on the real `VisionTransformer` (random weights, fused attention "
                 "with an added `scaled_dot_product_attention` handle); `exact` means analytic and traced "
                 "counts agree to the multiply-add, per operator, with identical token counts per block.")
    else:
        L.append("(Generated with `trace=false`: analytic counts only.)")
    L.append("")
    L.append("Columns beyond the paper (per query, GFLOPs in the paper convention): **text** = one caption "
             "through the text-mode encoder padded to the dataset's `max_txt_l`; **ITM** = re-ranking the "
             "`k_test` = 128 candidates of one query (fusion layers cross-attending to every final vision "
             "token, recomputed per pair as the official code does); **QA** = one question: multi-modal "
             "question encoder + answer decoder (first-token pass + 128 candidates).")
    L.append("")
    L.append("## Published vid-TLDR schedules (12 frames)")
    L.append("")
    hdr = ["task", "backbone", "r (first blocks)", "final tokens", "GFLOPs", "published recount", "Fig. 1",
           "true GFLOPs"]
    if traced:
        hdr.append("traced")
    hdr += ["text/query", "ITM k=128/query", "QA/question"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for rep in data["schedules"]:
        key = (rep["dataset"], BACKBONE_OF_ARCH.get(rep["arch"], rep["model"]))
        pub = PUBLISHED_GFLOPS[key]
        ours = rep["gflops_paper_1dp"]
        fig = FIGURE1_GFLOPS.get(rep["dataset"]) if key[1] == "umt_b" else None
        fig_s = "-" if fig is None else (f"{fig:.1f}" if fig == pub else f"**{fig:.1f} (differs from the schedule's {pub:.1f})**")
        pub_s = f"{pub:.1f}" + (" ok" if ours == pub else " **MISMATCH**")
        cells = [DATASET_LABEL.get(rep["dataset"], rep["dataset"]), BACKBONE_LABEL.get(key[1], key[1]),
                 _schedule_str(rep["r"]), str(rep["tokens_per_layer"][-1]), f"{ours:.1f}", pub_s, fig_s,
                 f"{rep['gflops_true']:.1f}"]
        if traced:
            cells.append("exact" if rep["traced"]["exact"] else f"**{rep['traced']['gflops_paper']:.2f}**")
        ex = rep["extra"]
        cells += [f"{ex['text_per_query']['gflops_paper']:.2f}" if "text_per_query" in ex else "-",
                  f"{ex['itm_rerank_per_query']['gflops_paper']:.1f}" if "itm_rerank_per_query" in ex else "-",
                  f"{ex['qa_per_question']['gflops_paper']:.1f}" if "qa_per_question" in ex else "-"]
        L.append("| " + " | ".join(cells) + " |")
    n_ok = sum(1 for rep in data["schedules"]
               if rep["gflops_paper_1dp"] == PUBLISHED_GFLOPS[(rep["dataset"], BACKBONE_OF_ARCH[rep["arch"]])])
    L.append("")
    L.append(f"{n_ok} of {len(data['schedules'])} schedules reproduce the published recount to 0.1 GFLOPs.")
    differ = [(rep["dataset"], FIGURE1_GFLOPS[rep["dataset"]], rep["gflops_paper_1dp"]) for rep in data["schedules"]
              if BACKBONE_OF_ARCH[rep["arch"]] == "umt_b" and FIGURE1_GFLOPS.get(rep["dataset"]) is not None
              and FIGURE1_GFLOPS[rep["dataset"]] != rep["gflops_paper_1dp"]]
    if differ:
        L.append("The paper's Figure 1 prints " + " and ".join(f"{g:.1f} for {DATASET_LABEL[d]}" for d, g, _ in differ)
                 + "; the published UMT-B schedules for those tasks cost "
                 + " and ".join(f"{c:.1f}" for _, _, c in differ)
                 + ", so those Figure-1 points were not produced by the released schedules.")
    if traced:
        extras = [e for rep in data["schedules"] + data["baselines"] for e in rep["extra"].values()]
        ok = all(e.get("traced_exact") for e in extras)
        L.append(f"Text / ITM / QA columns: fvcore counts of the real text modules (one caption, one ITM pair x k_test, "
                 f"one question) {'equal the analytic ones in every row' if ok else '**differ from the analytic ones in some rows**'}.")
    L.append("")
    L.append("## No reduction")
    L.append("")
    hdr = ["backbone", "frames", "tokens", "GFLOPs", "published", "true GFLOPs"] + (["traced"] if traced else []) \
        + ["text/query", "ITM k=128/query"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for rep in data["baselines"]:
        b = BACKBONE_OF_ARCH[rep["arch"]]
        pub = PUBLISHED_BASELINES.get((b, rep["num_frames"]))
        ours = rep["gflops_paper_1dp"]
        cells = [BACKBONE_LABEL[b], str(rep["num_frames"]), str(rep["tokens_per_layer"][0]), f"{ours:.1f}",
                 "-" if pub is None else f"{pub:.1f}" + (" ok" if pub == ours else " **MISMATCH**"),
                 f"{rep['gflops_true']:.1f}"]
        if traced:
            cells.append("exact" if rep["traced"]["exact"] else f"**{rep['traced']['gflops_paper']:.2f}**")
        ex = rep["extra"]
        cells += [f"{ex['text_per_query']['gflops_paper']:.2f}", f"{ex['itm_rerank_per_query']['gflops_paper']:.1f}"]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("Text lengths: MSRVTT's (`max_txt_l` 32). The ITM column is what a retrieval query costs on top of "
             "the encoder: with k_test = 128 it exceeds the vision encoder itself, and it shrinks with the "
             "merged token count because each fusion layer's cross-attention reads every final vision token.")
    L.append("")
    L.append("## ToMe GFLOPs in Figure 1 (UMT-B, constant r in all 12 blocks)")
    L.append("")
    L.append("| task | Fig. 1 ToMe | ToMe preset r | count, keys metric (this repo's ToMe) | count, hidden-state metric | "
             "constant r matching Fig. 1: hidden-state metric | keys metric |")
    L.append("|---|---|---|---|---|---|---|")
    for t in data["tome_figure1"]:
        L.append(f"| {DATASET_LABEL[t['dataset']]} | {t['figure1']:.1f} | {t['preset_r'] if t['preset_r'] else '-'} | "
                 f"{'-' if t['keys_metric'] is None else format(t['keys_metric'], '.2f')} | "
                 f"{'-' if t['hidden_metric'] is None else format(t['hidden_metric'], '.2f')} | "
                 f"{', '.join(map(str, t['constant_r_fits_hidden'])) or 'none'} | "
                 f"{', '.join(map(str, t['constant_r_fits_keys'])) or 'none'} |")
    L.append("")
    gaps = [t["hidden_metric"] - t["keys_metric"] for t in data["tome_figure1"] if t["keys_metric"] is not None]
    nofit = [DATASET_LABEL[t["dataset"]] for t in data["tome_figure1"]
             if not t["constant_r_fits_hidden"] and not t["constant_r_fits_keys"]]
    if gaps:
        L.append(f"With a full-width similarity (ToMe run on the hidden state, like vid-TLDR's matcher) the presets "
                 f"reproduce Figure 1; ToMe proper matches on head-mean keys (width {vision_head_dim(data)}), which "
                 f"costs {min(gaps):.1f}-{max(gaps):.1f} GFLOPs less at the same r, so `merge=tome merge.r=published` "
                 f"runs below the Figure-1 ToMe GFLOPs. "
                 + (f"No constant r fits {' or '.join(nofit)} with either metric." if nofit else ""))
    L.append("")
    L.append("## True-FLOP rules")
    L.append("")
    L.append("| item | flops per element |")
    L.append("|---|---|")
    for k, v in TRUE_COST.items():
        L.append(f"| {k} | {v} |")
    L.append("")
    L.append("Comparisons (max, argsort, top-k), gathers, copies, casts and the scatter of unchanged rows count 0.")
    return "\n".join(L) + "\n"


BACKBONE_OF_ARCH = {"umt_b16": "umt_b", "umt_l16": "umt_l", "tiny": "tiny"}


def vision_head_dim(_data=None) -> int:
    return backbone_vision_dims("umt_b16").head_dim


def write_table(md_path: Path, json_path: Optional[Path] = None, trace: bool = True) -> dict:
    data = table_rows(trace=trace, progress=lambda m: print(m, file=sys.stderr, flush=True))
    _atomic_write(md_path, render_table(data, traced=trace))
    if json_path is not None:
        _atomic_write(json_path, json.dumps(data, indent=1) + "\n")
    n_ok = sum(1 for rep in data["schedules"]
               if rep["gflops_paper_1dp"] == PUBLISHED_GFLOPS[(rep["dataset"], BACKBONE_OF_ARCH[rep["arch"]])])
    summary = {"table": str(md_path), "schedules": len(data["schedules"]), "schedules_matching": n_ok,
               "baselines_matching": sum(1 for rep in data["baselines"] if rep["gflops_paper_1dp"] ==
                                         PUBLISHED_BASELINES[(BACKBONE_OF_ARCH[rep["arch"]], rep["num_frames"])]),
               "traced_exact": all(r.get("traced", {}).get("exact", True)
                                   for r in data["schedules"] + data["baselines"])}
    print(f"wrote {md_path}" + (f" and {json_path}" if json_path else ""))
    print(json.dumps(summary))
    return summary


def main() -> None:
    import hydra

    @hydra.main(config_path=str(CONFIG_DIR), config_name="flops", version_base=None)
    def _run(cfg) -> None:
        with cli_guard("vidtldr.analysis.flops"):
            main_cli(cfg)

    _run()


if __name__ == "__main__":
    main()
