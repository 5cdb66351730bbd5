"""The benchmark's gapped-schedule rows: what "fused takes the official decisions for any schedule"
costs.

With a schedule that leaves blocks idle before a merge (``gapped_r``, e.g. ``[0, 600, 0, 200]``)
the fused execution runs the materialized arithmetic in query blocks up to the last merging block
(``VisionTransformer.exact_through``) and SDPA only after it. Three executions show the price:

* ``vidtldr-gapped`` / fused and / materialized: vid-TLDR with ``gapped_r``;
* ``vidtldr-gapped-sdpa`` / fused: the same reducer without the exact prefix (SDPA in the idle
  blocks before a merge), i.e. the fused execution before the guarantee, whose merge decisions
  can differ from the official ones. Timing comparison only.
"""

from __future__ import annotations

from vidtldr.reduce import build_reducer

GAPPED = "vidtldr-gapped"
GAPPED_SDPA = "vidtldr-gapped-sdpa"


class _NoExactPrefix:
    """A reducer unchanged, except that it reports no reducing blocks to the encoder, so the fused
    execution gets no exact prefix (every other attribute is the wrapped reducer's)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def reducing_blocks(self, num_tokens: int) -> list:
        return []


def gapped_executions(cfg, gapped_r, attentions: list[str]) -> list[dict]:
    """Keyword arguments of the benchmark's ``Execution`` for the gapped rows (none when
    ``gapped_r`` is None); the schedule goes through the evaluation's resolver like every other."""
    if gapped_r is None:
        return []
    from vidtldr.run.runspec import resolve_model, with_merge

    run = resolve_model(with_merge(cfg, "vidtldr", list(gapped_r)))

    def sdpa():
        return _NoExactPrefix(run.reducer())

    out = [{"merge": GAPPED, "attention": mode, "schedule": list(run.schedule), "reducer_factory": run.reducer,
            "schedule_source": "gapped_r"} for mode in attentions]
    if "fused" in attentions:
        out.append({"merge": GAPPED_SDPA, "attention": "fused", "schedule": list(run.schedule),
                    "reducer_factory": sdpa, "schedule_source": "gapped_r, SDPA before the merges"})
    return out


def gapped_summary(rows: list, outputs: dict, num_tokens: int) -> dict:
    """``{"gapped": {...}}``: the last exact block, the time of each gapped execution, the price of
    the exact prefix (fused with it / fused without it, medians and fastest repeats) and how far
    each fused execution's final tokens land from the materialized ones. Empty without the rows."""
    by = {(r["merge"], r["attention"]): r for r in rows}
    exact = by.get((GAPPED, "fused"))
    if exact is None:
        return {}
    blocks = build_reducer("vidtldr", list(exact["r"])).reducing_blocks(num_tokens)
    out = {"r": exact["r"], "exact_through": blocks[-1] if blocks else -1,
           "fused_s": exact["s_per_clip"]}
    sdpa, mat = by.get((GAPPED_SDPA, "fused")), by.get((GAPPED, "materialized"))
    if sdpa:
        out["sdpa_s"] = sdpa["s_per_clip"]
        out["exact_cost_x"] = round(exact["s_per_clip"] / sdpa["s_per_clip"], 3)
        out["exact_cost_x_best"] = round(exact["best_s_per_clip"] / sdpa["best_s_per_clip"], 3)
    if mat:
        out["materialized_s"] = mat["s_per_clip"]
        ref_tokens, ref_counts = outputs[(GAPPED, "materialized")]
        for key, merge in (("fused", GAPPED), ("sdpa", GAPPED_SDPA)):
            if (merge, "fused") in outputs:
                tokens, counts = outputs[(merge, "fused")]
                same = counts == ref_counts and tokens.shape == ref_tokens.shape
                out[f"{key}_max_abs_diff_vs_materialized"] = (
                    (tokens - ref_tokens).abs().max().item() if same else None)
    return {"gapped": out}


def gapped_lines(run: dict) -> list[str]:
    """Markdown lines for a benchmark run's gapped rows (none without them)."""
    g = run.get("gapped")
    if not g:
        return []
    text = (f"Gapped schedule r={g['r']} (vid-TLDR): fused runs the materialized arithmetic through block "
            f"{g['exact_through']}, so its merge decisions are the official ones; {g['fused_s']:.3f} s/clip")
    if "sdpa_s" in g:
        text += (f" against {g['sdpa_s']:.3f} s with SDPA before the merges (the fused execution without that "
                 f"guarantee): time with / without the exact prefix {g['exact_cost_x']}x (fastest repeats "
                 f"{g['exact_cost_x_best']}x)")
    if "materialized_s" in g:
        text += f"; materialized {g['materialized_s']:.3f} s/clip"
    named = (("fused", "fused_max_abs_diff_vs_materialized"),
             ("SDPA before the merges", "sdpa_max_abs_diff_vs_materialized"))
    diffs = [f"{name} {g[key]:.1e}" for name, key in named if g.get(key) is not None]
    if diffs:
        text += "; final tokens max |diff| vs materialized: " + ", ".join(diffs)
    return [text + ".", ""]
