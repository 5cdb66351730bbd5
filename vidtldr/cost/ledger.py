"""The counting rules shared by every analytic cost: the paper's convention and true FLOPs.

**Paper convention**: what the official evaluation reports, i.e. fvcore's count, which takes one
multiply-add as one "flop" and counts only convolution, linear, matmul and layer norm (5 per
element with an affine transform). Softmax, log, GELU, residual adds, sorting, gathers and
scatters count 0, so the paper's "GFLOPs" are really GMACs plus a little.

**True FLOPs**: every multiply-add is two flops, and the arithmetic fvcore ignores is counted with
the per-element costs of :data:`TRUE_COST` (one flop per add, multiply, divide or transcendental;
comparisons, sorting, gathers, scatters-by-copy and casts are free). The details are a fixed,
documented choice; matmul-like work is over 97 % of the total anyway.
"""

from __future__ import annotations

from collections import Counter

#: fvcore's layer-norm estimate: 5 "flops" per element when the norm has an affine transform.
FVCORE_LN_PER_ELEM = 5

#: Per-element costs of the arithmetic that the paper convention does not count (true FLOPs).
TRUE_COST = {
    "mac": 2,            # one multiply + one add
    "bias": 1,           # one add per output element
    "layer_norm": 7,     # mean (1), centre (1), square+accumulate (2), scale by rstd (1), affine (2)
    "softmax": 4,        # subtract row max (1), exp (1), accumulate (1), divide (1); max itself is a comparison
    "gelu": 5,           # exact GELU: x/sqrt2 (1), erf (1), +1 (1), *x (1), *0.5 (1)
    "add": 1,            # residual adds, position embedding, additive attention bias
    "scale": 1,          # q * head_dim**-0.5
    "neg_entropy": 3,    # ln p (1), p * ln p (1), accumulate over keys (1), per head-mean probability
    "head_mean": 1,      # accumulate one head (+ the final divide, amortised), per element averaged
    "cosine": 2,         # (s + 1) / 2 on each similarity
    "l2_normalise": 3,   # square + accumulate (2) and divide (1) per element
    "l2_norm": 2,        # square + accumulate per element (the per-token sqrt is counted with O(T) work)
}


class Ledger:
    """Accumulates one computation's cost in both conventions, by category.

    ``paper`` mirrors what fvcore would count for the same operations (MACs for conv/linear/matmul,
    5 per layer-norm element); ``true`` is the flop count under :data:`TRUE_COST`.
    """

    def __init__(self) -> None:
        self.paper: Counter = Counter()
        self.true: Counter = Counter()

    # fvcore-visible operators --------------------------------------------------------------
    def linear(self, rows: int, d_in: int, d_out: int, bias_cols: int | None = None, cat: str = "linear"):
        """``rows`` x ``d_in`` @ ``d_in`` x ``d_out``; ``bias_cols`` output columns get a bias add
        (default all; 0 for none)."""
        macs = rows * d_in * d_out
        self.paper[cat] += macs
        self.true[cat] += TRUE_COST["mac"] * macs
        self.true["bias"] += TRUE_COST["bias"] * rows * (d_out if bias_cols is None else bias_cols)

    def matmul(self, batch: int, m: int, k: int, n: int, cat: str = "matmul"):
        macs = batch * m * k * n
        self.paper[cat] += macs
        self.true[cat] += TRUE_COST["mac"] * macs

    def layer_norm(self, elems: int):
        self.paper["layer_norm"] += FVCORE_LN_PER_ELEM * elems
        self.true["layer_norm"] += TRUE_COST["layer_norm"] * elems

    # fvcore-invisible arithmetic (true FLOPs only) -----------------------------------------
    def elementwise(self, kind: str, elems: int, cat: str | None = None):
        self.true[cat or kind] += TRUE_COST[kind] * elems

    def flops_only(self, cat: str, flops: int):
        self.true[cat] += flops

    # summaries ------------------------------------------------------------------------------
    @property
    def paper_total(self) -> int:
        return sum(self.paper.values())

    @property
    def true_total(self) -> int:
        return sum(self.true.values())

    def merged(self, other: "Ledger", times: int = 1) -> "Ledger":
        """A new ledger: this one plus ``times`` copies of ``other``."""
        out = Ledger()
        for src, k in ((self, 1), (other, times)):
            for name, v in src.paper.items():
                out.paper[name] += k * v
            for name, v in src.true.items():
                out.true[name] += k * v
        return out


def round1(x: float) -> float:
    """Round to one decimal the way the official ``round(total / 1e9, 1)`` does."""
    return round(x, 1)
