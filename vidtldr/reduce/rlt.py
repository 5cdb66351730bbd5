"""Run-length tokenization, training-free (Choudhury et al., "Don't Look Twice: Faster Video
Transformers with Run-Length Tokenization", NeurIPS 2024).

Before the first block, a tubelet token that barely differs from the token at the same position
one tubelet step earlier is removed: of each run of repeated patches only the first is kept, with
its own position embedding (the tokens are removed after the patch and position embedding, so every
survivor keeps the position it came from). The change of a token is the mean absolute difference,
over its 3 x p x p pixels, between the *last* frame of its tubelet and the *first* frame of the
tubelet before it at the same position (the authors' comparison; with one-frame tubelets, simply
the previous frame), computed on the model's normalised input. Tokens of the first tubelet step have
no predecessor and are always kept. The paper's trained variant adds a run-length embedding; this is
the training-free one.

Two forms:

* **fixed budget** (``merge.threshold: null``, the default): the ``r`` least-changed tokens are
  removed, ``r`` from the first entry of ``merge.r`` (a token count, or a fraction of the embedded
  tokens), at most every token after the first step. The token count does not depend on the
  content, so the GFLOPs are exact.
* **threshold** (the paper's, content-adaptive): every token whose change is at most
  ``merge.threshold`` is removed, still at most ``r`` (the least changed first), so the GFLOPs are at
  most those of ``r``; the count varies per video, so each forward encodes one video
  (``data.batch_size=1``). The threshold is in the units of the normalised input: an intensity
  step of ``d`` out of 255 in every channel is about ``d / (255 * 0.226) = d / 57.6`` there.

Removed tokens are dropped (no sizes); provenance (``trace_source``) is kept.
"""

from __future__ import annotations

from typing import Optional

import torch

from vidtldr.errors import ConfigError
from vidtldr.reduce.base import ReductionState, Reducer, apply_keep, register_reducer


def tubelet_change(video: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``[B, (t - 1) * h * w]``: the change of every token after the first tubelet step (t, h, w
    order), for ``video`` ``[B, 3, T, H, W]`` cut into ``grid`` ``(t, h, w)`` tubelets."""
    batch, channels, frames, height, width = video.shape
    t, h, w = grid
    step, patch = frames // t, height // h
    if t * step != frames or h * patch != height or w * (width // w) != width:
        raise ValueError(f"video {tuple(video.shape)} does not cut into a {grid} grid of tubelets")
    last = video[:, :, 2 * step - 1::step].float()          # last frame of tubelets 1 .. t-1
    first = video[:, :, 0:frames - step:step].float()       # first frame of tubelets 0 .. t-2
    diff = (last - first).abs().reshape(batch, channels, t - 1, h, patch, w, width // w)
    return diff.mean(dim=(1, 4, 6)).reshape(batch, (t - 1) * h * w)


def run_length_keep(change: torch.Tensor, per_step: int, remove: int,
                    threshold: Optional[float] = None) -> torch.Tensor:
    """Ascending indices ``[B, N - removed]`` of the tokens kept, ``change`` ``[B, N - per_step]``
    being the change of every token after the first ``per_step`` ones: the ``remove`` least changed
    are removed (ties: the earlier token), or with ``threshold`` those whose change is at most it,
    up to ``remove`` of them (every sample must then remove as many: one video per forward)."""
    batch = change.shape[0]
    order = change.argsort(dim=1, stable=True)
    if threshold is not None:
        below = (change <= threshold).sum(dim=1)
        if batch > 1 and not bool((below == below[0]).all()):
            raise ConfigError("merge=rlt merge.threshold: the content-adaptive form removes a different number of "
                              "tokens per video; encode one video per forward (data.batch_size=1)")
        remove = min(remove, int(below[0])) if batch else 0
    kept_later = order[:, remove:].sort(dim=1).values + per_step
    first = torch.arange(per_step, device=change.device).expand(batch, per_step)
    return torch.cat([first, kept_later], dim=1)


@register_reducer("rlt")
class RunLength(Reducer):
    """Input-level: removes repeated tubelet tokens before block 0 (fixed budget or threshold)."""

    need = None
    match_on = None
    tracks_sizes = False
    input_level = True

    def __init__(self, schedule: list | None = None, threshold: Optional[float] = None):
        super().__init__(schedule)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not threshold >= 0):
            raise ConfigError(f"merge.threshold: expected null (fixed budget) or a number >= 0, got {threshold!r}")
        self.threshold = None if threshold is None else float(threshold)

    def describe(self) -> dict:
        return {**super().describe(), "threshold": self.threshold}

    @property
    def adaptive(self) -> bool:
        """The threshold form: the token count depends on the video (GFLOPs per video)."""
        return self.threshold is not None

    def input_budget(self, num_tokens: int) -> int:
        """``merge.r``'s first entry as a token count (a fraction of ``num_tokens``, truncated)."""
        entry = self.schedule[0] if self.schedule else 0
        return int(num_tokens * entry) if entry < 1 else int(entry)

    def input_removed(self, num_tokens: int, per_step: int) -> int:
        """The budget, at most the tokens after the first step (the most the threshold form removes)."""
        return max(0, min(self.input_budget(num_tokens), num_tokens - per_step))

    def input_flops(self, dims, num_tokens: int, removed: int) -> int:
        # difference, absolute value and sum over 3 x p x p pixels for every token after the first step
        per_step = (dims.img_size // dims.patch_size) ** 2
        return 3 * dims.in_chans * dims.patch_size ** 2 * (num_tokens - per_step)

    def reduce_input(self, x: torch.Tensor, state: ReductionState, aux: dict) -> torch.Tensor:
        grid = aux["grid"]
        per_step = grid[1] * grid[2]
        remove = self.input_removed(x.shape[1], per_step)
        if remove == 0 and self.threshold is None:
            return x
        change = tubelet_change(aux["video"], grid)
        keep = run_length_keep(change, per_step, remove, self.threshold)
        if state.record_trace:
            state.trace.append({"layer": -1, "tokens_in": x.shape[1], "r_merge": x.shape[1] - keep.shape[1],
                                "keep_idx": keep, "change": change})
        return apply_keep(keep.to(x.device), x, state)
