"""fvcore's count of the real modules, to keep the analytic counts (:mod:`vidtldr.cost`) honest.

fvcore has no handle for ``aten::scaled_dot_product_attention`` (a fused attention would count 0),
so one is added; the reducers' own similarity matmuls are counted as fvcore's "matmul".
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass

from vidtldr.cost.vision import VisionCost


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


def traced_vision_cost(encoder, vision_cfg, reducer=None, batch: int = 1) -> TracedCount:
    """fvcore's count of one forward of ``encoder``, built by the assembler (:mod:`vidtldr.run.assemble`):
    a whole model (its ``encode_vision``, ``build_model``) or the vision encoder alone (``build_vision``),
    on a random clip of ``vision_cfg``'s size.

    An encoder built with ``attention="fused"`` traces SDPA / query-blocked attention (counted by the
    added handle), ``"materialized"`` the official explicit map; both must give the same total. The
    reducer's similarity matmul is counted as fvcore's "matmul"; :func:`compare` splits it off analytically.
    """
    import torch

    whole = hasattr(encoder, "encode_vision")
    seen: dict = {}

    class _Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = encoder

        def forward(self, videos):
            out = self.vit.encode_vision(videos, reducer=reducer) if whole else self.vit(videos, reducer=reducer)
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


def traced_extra_costs(model, spec, vision_tokens: int) -> dict:
    """fvcore counts (paper convention) of the costs outside the encoder, on the text modules of
    ``model`` (built by the assembler, :func:`vidtldr.run.assemble.build_model`): the model calls the
    spec's task declares for one query (:meth:`vidtldr.tasks.base.Task.query_calls`; retrieval:
    text-mode encoder + ITC projection for one caption and one ITM pair times ``k_test``; QA:
    question encoder + first-token pass + ``k_test`` candidates)."""
    import torch

    from vidtldr.tasks.base import get_task

    class _Call(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.model = model
            self.fn = fn

        def forward(self, *args):
            return self.fn(*args)

    def traced(fn, args) -> int:
        with torch.no_grad(), _quiet_trace():
            return int(_counting_analysis(_Call(fn), args).total())

    calls = get_task(spec.task).query_calls(model, spec, vision_tokens)
    return {name: times * sum(traced(fn, args) for fn, args in parts) for name, (times, parts) in calls.items()}


def compare(analytic: VisionCost, traced: TracedCount, norms_in_paper: bool = True) -> dict:
    """Cross-check: per fvcore operator, analytic minus traced (all zero when they agree).

    The analytic "attention" (q.k^T, A.v) and "match" categories are both "matmul" for fvcore,
    unless the trace ran fused attention (then attention is the SDPA handle's category).
    ``norms_in_paper=False`` (a family whose published convention leaves layer norms out): fvcore's
    layer-norm count is left out of the comparison too."""
    a = Counter(analytic.paper_by_op)
    a["matmul"] += a.pop("match", 0)
    t = Counter(traced.merged_attention())
    if not norms_in_paper:
        t.pop("layer_norm", None)
    ops = sorted(set(a) | set(t))
    diff = {op: int(a.get(op, 0) - t.get(op, 0)) for op in ops}
    return {"exact": all(v == 0 for v in diff.values()) and analytic.tokens_per_layer == traced.token_counts,
            "diff_by_op": {k: v for k, v in diff.items() if v},
            "analytic": analytic.paper, "traced": sum(t.values())}
