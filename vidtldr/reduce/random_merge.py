"""Random merge: ToMe's bipartite merging with the merged tokens drawn at random.

The control for ToMe's *selection* rule (Pollard & Wray, "Video, How Do Your Tokens Merge?", eLVM
workshop at CVPR 2025, compare merging with random choices; the "principles of visual tokens" study,
arXiv 2411.13626, finds random choices hard to beat at matched budgets). Everything but the choice
is ToMe's (:mod:`vidtldr.reduce.tome`): the sequence is split into even (A) and odd (B) positions,
and each of the ``r`` A tokens merges into the B token whose head-mean key is most similar (cosine),
by a size-weighted average; sizes feed proportional attention in later blocks. Which ``r`` A tokens
merge is drawn uniformly without replacement with random drop's seeding
(:mod:`vidtldr.reduce.random_drop`: one generator per sample, seeded from ``(seed, block, a
fingerprint of the sample's tokens)``), so a sample draws the same whatever its batch.

Only the drawn tokens are compared with B: the similarity is ``r x floor(T/2)``, not ToMe's
``ceil(T/2) x floor(T/2)``. Output order: the A tokens that stay (ascending), then every B token.
"""

from __future__ import annotations

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_merge, register_reducer
from vidtldr.reduce.random_drop import outside_trace, sample_fingerprint, sample_seed
from vidtldr.reduce.tome import ToMeMatch, tome_merge_source, tome_merge_wavg


@outside_trace
def random_sources(x: torch.Tensor, r: int, seed: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(drawn, rest)``, ``[B, r]`` and ``[B, ceil(T/2) - r]`` ascending indices into the even half
    of ``x`` ``[B, T, C]``: each sample's own generator draws ``r`` of its even-position tokens."""
    n_even = (x.shape[1] + 1) // 2
    if not 0 <= r <= n_even:
        raise ValueError(f"cannot draw {r} of {n_even} even-position tokens")
    drawn, rest = [], []
    for tokens in x:
        generator = torch.Generator().manual_seed(sample_seed(seed, layer, sample_fingerprint(tokens)))
        order = torch.rand(n_even, generator=generator).argsort()
        drawn.append(order[:r].sort().values)
        rest.append(order[r:].sort().values)
    return torch.stack(drawn).to(x.device), torch.stack(rest).to(x.device)


def random_match(metric: torch.Tensor, drawn: torch.Tensor, rest: torch.Tensor) -> ToMeMatch:
    """Each drawn even token ``drawn`` ``[B, r]`` matched to its most similar odd token (cosine of
    ``metric`` ``[B, T, D]``); ``rest`` ``[B, *]`` are the even tokens that stay."""
    with torch.no_grad():
        m = metric / metric.norm(dim=-1, keepdim=True)
        src = m[:, 0::2, :].gather(1, drawn[..., None].expand(-1, -1, m.shape[-1]))
        sim = src @ m[:, 1::2, :].transpose(-1, -2)                    # [B, r, floor(T/2)]
        dst = sim.argmax(dim=-1)
    return ToMeMatch(unm_idx=rest[..., None], src_idx=drawn[..., None], dst_idx=dst[..., None])


@register_reducer("random_merge")
class RandomMerge(Reducer):
    """ToMe with the ``r`` merged tokens drawn at random (seeded like ``random``)."""

    need = "keys"          # ToMe's metric: head-mean keys
    match_on = "keys"
    tracks_sizes = True    # size-weighted average; proportional attention afterwards
    stochastic = True      # draws from its seed: compare runs it over seeds

    def __init__(self, schedule: list | None = None, seed: int = 0):
        super().__init__(schedule)
        self.seed = int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}

    @classmethod
    def similarity_shape(cls, num_tokens: int, removed: int) -> tuple[int, int]:
        return removed, num_tokens // 2   # only the drawn tokens against the odd half

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        keys = self.needed(aux, "keys", layer)
        n_tok = x.shape[1]
        drawn, rest = random_sources(x, r, self.seed, layer)
        match = random_match(keys, drawn, rest)
        x = apply_merge(match, x, state, tome_merge_wavg, tome_merge_source)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "unm_idx": match.unm_idx,
                                "src_idx": match.src_idx, "dst_idx": match.dst_idx})
        return x
