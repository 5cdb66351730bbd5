"""Per-layer token-reduction schedules.

A schedule is one entry per transformer block. An entry is either an absolute number of tokens to
remove (int >= 1), a fraction of the block's *current* token count (0 < r < 1, truncated like the
official ``int(T * r)``), or 0. Whatever the entry, the amount removed is clamped to ``T // 2``
(bipartite matching cannot remove more than the smaller half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

from vidtldr.errors import ScheduleError

Entry = Union[int, float]

# Published vid-TLDR schedules (from the official vid-TLDR README), stored as
# their non-zero prefix: the remaining blocks remove nothing. Keyed by (dataset, backbone).
VIDTLDR_PRESETS: dict[tuple[str, str], list[int]] = {
    ("msrvtt", "umt_b"): [600, 200, 100],
    ("msrvtt", "umt_l"): [550, 400],
    ("msvd", "umt_b"): [450, 250, 200],
    ("msvd", "umt_l"): [600, 200, 100, 100],
    ("anet", "umt_b"): [500],
    ("anet", "umt_l"): [600, 300],
    ("didemo", "umt_b"): [250, 150, 150, 150],
    ("didemo", "umt_l"): [800, 100],
    ("lsmdc", "umt_b"): [400, 150, 150],
    ("lsmdc", "umt_l"): [250, 250, 200, 200],
    ("ssv2_label", "umt_b"): [200, 200, 200, 100],
    ("ssv2_label", "umt_l"): [450, 250, 100],
    ("ssv2_template", "umt_b"): [400, 300],
    ("ssv2_template", "umt_l"): [350, 300, 100, 50],
    ("msrvtt_qa", "umt_b"): [600, 200],
    ("msrvtt_qa", "umt_l"): [400, 400, 100],
    ("msvd_qa", "umt_b"): [600, 200],
    ("msvd_qa", "umt_l"): [400, 400, 100],
}


# Constant-r ToMe schedules for UMT-B (every block), read off the ToMe GFLOPs of the vid-TLDR
# paper's Figure 1 (vidtldr/report/paper_reference.csv, table fig1; see results/flops.md). MSRVTT (231.4) and DiDeMo (223.9) fit no constant
# r, so they have no preset; pass merge.r explicitly for them.
TOME_PRESETS: dict[str, int] = {
    "msvd": 100,
    "anet": 80,
    "lsmdc": 95,
    "ssv2_label": 85,
    "ssv2_template": 75,
    "msrvtt_qa": 75,
    "msvd_qa": 85,
}


#: The name of the schedule made of vid-TLDR's published UMT schedule as fractions (:func:`umt_fractions`).
UMT_FRACTIONS = "umt_fractions"
#: UMT's tokens at the 12 frames of every published schedule (12 frames x 14 x 14 patches).
UMT_TOKENS = 12 * 196


def umt_fractions(dataset: str | None, backbone: str | None, num_tokens: int = UMT_TOKENS) -> list[float]:
    """vid-TLDR's published UMT schedule for ``dataset``/``backbone`` as the fraction of the tokens
    entering each block that the block removes, of UMT's ``num_tokens``: each the shortest decimal
    (4 places at least) that removes exactly the published count from its own tokens
    (:func:`reproducing_fraction`), so the fractions read the same in a record and on a command line
    and give back the published schedule on its source. Applied to another token count (a zero-shot
    run at 4 frames, VideoMAE's 1568 tokens) it removes the same shares, not the same counts."""
    key = (dataset, backbone)
    if key not in VIDTLDR_PRESETS:
        known = ", ".join(f"{d}/{b}" for d, b in VIDTLDR_PRESETS)
        raise ScheduleError(f"merge.r={UMT_FRACTIONS}: no published vid-TLDR schedule for {dataset}/{backbone} to "
                            f"take fractions from (set the dataset's schedule_source and the model's "
                            f"schedule_backbone to one of: {known}), or pass merge.r=[...] explicitly")
    fractions, tokens = [], num_tokens
    for removed in VIDTLDR_PRESETS[key]:
        fractions.append(reproducing_fraction(removed, tokens))
        tokens -= removed
    return fractions


def reproducing_fraction(removed: int, tokens: int, places: int = 4) -> float:
    """The shortest decimal fraction, ``places`` digits at least, at or just above ``removed /
    tokens`` whose truncated share of ``tokens`` is exactly ``removed`` (the per-block rule
    truncates, :func:`tokens_to_remove`; its clamp at half the tokens is the run's business).
    Rounding to nearest would not: 600/2352 = 0.255102.. rounds to 0.2551, and int(2352 x 0.2551)
    = 599; at a third of the tokens (784) it gives 199, not the 200 the share stands for."""
    if not 0 <= removed < tokens:
        raise ScheduleError(f"cannot remove {removed} of {tokens} tokens as a fraction below 1")
    exact = removed / tokens
    for digits in range(places, 16):
        scale = 10 ** digits
        # one step up where the float product falls just short (0.3072 x 625 = 191.99999999999997)
        for steps in (0, 1):
            candidate = (math.ceil(exact * scale) + steps) / scale
            if int(tokens * candidate) == removed:
                return candidate
    raise AssertionError(f"no decimal fraction gives {removed} of {tokens}")  # unreachable: 15 digits suffice


def umt_fractions_note(dataset: str, backbone: str, published_here: bool, run: str) -> str:
    """One line for the record and the flops report: where the ``umt_fractions`` schedule of
    ``run`` (e.g. ``model=videomae_b dataset=kinetics400``) comes from, and whether that run has a
    published schedule of its own (it is never called published when it has none)."""
    source = (f"the fractions of the tokens each block removes in vid-TLDR's published {backbone} schedule for "
              f"{dataset} ({VIDTLDR_PRESETS[(dataset, backbone)]} of {UMT_TOKENS} tokens), applied to this "
              "run's own tokens")
    if published_here:
        return f"{UMT_FRACTIONS}: {source}"
    return f"{UMT_FRACTIONS}: no vid-TLDR schedule was published for {run}; {source}"


def _check_entry(entry: object, where: str) -> Entry:
    if isinstance(entry, bool) or not isinstance(entry, (int, float)):
        raise ScheduleError(f"{where}: expected an int (tokens) or a fraction in [0, 1), got {entry!r}")
    if isinstance(entry, float):
        if not math.isfinite(entry) or entry < 0:
            raise ScheduleError(f"{where}: expected a non-negative finite value, got {entry!r}")
        if entry == 1.0:  # "all of them" (impossible: at most half) or one token (dearer than none): refused
            raise ScheduleError(
                f"{where}: 1.0 is ambiguous: a fraction must be below 1 (a block removes at most half of its "
                "tokens, 0.5), and as a count it removes 1 token per block, which costs more than no merging "
                "(the scoring and matching are paid at every block); write 1 for one token, or a fraction < 1")
        if entry >= 1:
            if not entry.is_integer():
                raise ScheduleError(
                    f"{where}: {entry!r} is neither a token count (whole number) nor a fraction (< 1)")
            return int(entry)
        return entry
    if entry < 0:
        raise ScheduleError(f"{where}: expected a non-negative value, got {entry!r}")
    return int(entry)


def tome_decreasing(r: int, inflection: float, depth: int) -> list[int]:
    """ToMe's (r, inflection) schedule: a linear ramp around r whose slope is set by inflection
    (0 = constant r, negative = decreasing with depth, positive = increasing)."""
    if depth < 1:
        raise ScheduleError(f"depth must be >= 1, got {depth}")
    low = int(r * (1.0 - inflection))
    high = 2 * r - low
    if depth == 1:
        return [r]
    step = (high - low) / (depth - 1)
    return [int(low + step * i) for i in range(depth)]


def parse_schedule(r: object, depth: int, *, dataset: str | None = None,
                   backbone: str | None = None, reducer: str | None = None) -> list[Entry]:
    """Normalise ``r`` into a list of exactly ``depth`` entries.

    Accepts: a single int or fraction (applied to every block); a list of entries (shorter lists
    are padded with 0, as in the published prefixes; longer lists are an error); a pair
    ``(r, inflection)`` given as a tuple or as a dict ``{"r": r, "inflection": x}`` for ToMe-style
    ramps; the string ``"published"`` (the vid-TLDR schedule for ``dataset``/``backbone``, or with
    ``reducer="tome"`` the constant-r ToMe preset of ``TOME_PRESETS``, UMT-B only); the string
    ``"umt_fractions"`` (:func:`umt_fractions` of ``dataset``/``backbone``, here the UMT source); or
    ``None``/``0`` for no reduction.
    """
    if r is None:
        return [0] * depth
    if isinstance(r, str):
        return _named_schedule(r, depth, dataset, backbone, reducer)
    if isinstance(r, dict):
        try:
            r = (r["r"], r["inflection"])
        except KeyError as exc:
            raise ScheduleError(f"merge.r: a dict schedule needs keys 'r' and 'inflection', got {sorted(r)}") from exc
    if isinstance(r, tuple):
        if len(r) != 2:
            raise ScheduleError(f"merge.r: a tuple schedule is (r, inflection), got {r!r}")
        base = _check_entry(r[0], "merge.r[0]")
        if not isinstance(base, int):
            raise ScheduleError(f"merge.r: (r, inflection) needs an integer r, got {r[0]!r}")
        return tome_decreasing(base, float(r[1]), depth)
    if isinstance(r, (int, float)) and not isinstance(r, bool):
        return [_check_entry(r, "merge.r")] * depth
    if isinstance(r, Sequence):
        entries = [_check_entry(e, f"merge.r[{i}]") for i, e in enumerate(r)]
        if len(entries) > depth:
            raise ScheduleError(f"merge.r has {len(entries)} entries but the encoder has {depth} blocks")
        return entries + [0] * (depth - len(entries))
    raise ScheduleError(f"merge.r: cannot interpret {r!r} as a schedule")


def _named_schedule(name: str, depth: int, dataset: str | None, backbone: str | None,
                    reducer: str | None) -> list[Entry]:
    """``"published"``: ToMe's constant-r preset for ``reducer="tome"``, else vid-TLDR's schedule;
    ``"umt_fractions"``: vid-TLDR's schedule for ``dataset``/``backbone`` as fractions, any reducer."""
    if name == UMT_FRACTIONS:
        return parse_schedule(umt_fractions(dataset, backbone), depth)
    if name != "published":
        raise ScheduleError(f"merge.r: unknown schedule name {name!r} (expected a list, a number, 'published' "
                            f"or '{UMT_FRACTIONS}')")
    if reducer == "tome":
        return _tome_published(dataset, backbone, depth)
    key = (dataset, backbone)
    if key not in VIDTLDR_PRESETS:
        known = ", ".join(f"{d}/{b}" for d, b in VIDTLDR_PRESETS)
        raise ScheduleError(f"merge.r='published': no published vid-TLDR schedule for dataset={dataset!r}, "
                            f"backbone={backbone!r}. Published ones: {known}. Pass merge.r=[...] explicitly.")
    return parse_schedule(VIDTLDR_PRESETS[key], depth)


def _tome_published(dataset: str | None, backbone: str | None, depth: int) -> list[Entry]:
    if backbone not in (None, "umt_b") or dataset not in TOME_PRESETS:
        raise ScheduleError(f"merge.r='published': no ToMe preset for dataset={dataset!r}, backbone={backbone!r}. "
                            f"Presets exist for umt_b on: {', '.join(TOME_PRESETS)} (msrvtt and didemo fit no "
                            "constant r). Pass merge.r explicitly.")
    return [TOME_PRESETS[dataset]] * depth


def tokens_to_remove(entry: Entry, num_tokens: int) -> int:
    """The official per-block rule: fraction -> int(T * r); clamp to [0, T // 2]."""
    count = int(num_tokens * entry) if entry < 1 else int(entry)
    return max(min(count, num_tokens // 2), 0)


def token_counts(schedule: Sequence[Entry], num_tokens: int) -> list[int]:
    """Token count entering block 0, then after each block, for a bipartite-merging schedule."""
    counts = [num_tokens]
    for entry in schedule:
        counts.append(counts[-1] - tokens_to_remove(entry, counts[-1]))
    return counts
