"""Retrieval recall and QA accuracy, computed the way the official UMT / vid-TLDR code does.

Retrieval follows the official ``itm_eval``: each query's candidates are ordered with
``np.argsort(score)[::-1]`` (numpy's default, unstable sort: tied scores, such as the -100 of
non-re-ranked ITM entries, are ordered as numpy happens to order them), a query's rank is the best
0-based position among its ground truths, and R@k = 100 * fraction(rank < k). All values are
rounded to 2 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral

import numpy as np

OFFICIAL_KEYS = ("txt_r1", "txt_r5", "txt_r10", "txt_r_mean", "img_r1", "img_r5", "img_r10", "img_r_mean",
                 "r_mean")


def number(value) -> float | None:
    """A finite-or-inf float, or None for a missing / non-numeric / NaN value (pandas fills NaN)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _as_matrix(scores, name: str) -> np.ndarray:
    if hasattr(scores, "detach"):  # torch tensor; keep its dtype so tie ordering matches the official run
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D score matrix, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _gt_lists(gt_map, n_queries: int, n_targets: int, name: str) -> list[list[int]]:
    """Normalise a query -> ground-truth map (dict or sequence; values int or list of ints)."""
    if isinstance(gt_map, Mapping):
        missing = [q for q in range(n_queries) if q not in gt_map]
        if missing:
            raise ValueError(f"{name} has no entry for queries {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                             f"({n_queries} queries expected, keys 0..{n_queries - 1})")
        extra = [q for q in gt_map if not (isinstance(q, Integral) and 0 <= q < n_queries)]
        if extra:
            raise ValueError(f"{name} has keys outside 0..{n_queries - 1}: {extra[:5]}")
        entries = [gt_map[q] for q in range(n_queries)]
    elif isinstance(gt_map, Sequence) and not isinstance(gt_map, str):
        if len(gt_map) != n_queries:
            raise ValueError(f"{name} has {len(gt_map)} entries, expected {n_queries} (one per query)")
        entries = list(gt_map)
    else:
        raise ValueError(f"{name} must be a dict or a list, got {type(gt_map).__name__}")
    out = []
    for q, gt in enumerate(entries):
        ids = [gt] if isinstance(gt, Integral) and not isinstance(gt, bool) else gt
        if isinstance(ids, str) or not isinstance(ids, Sequence) or len(ids) == 0 \
                or not all(isinstance(i, Integral) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{name}[{q}] must be an int or a non-empty list of ints, got {gt!r}")
        bad = [int(i) for i in ids if not 0 <= i < n_targets]
        if bad:
            raise ValueError(f"{name}[{q}] = {gt!r} points outside the {n_targets} candidates: {bad}")
        out.append([int(i) for i in ids])
    return out


def _ranks(scores: np.ndarray, gts: list[list[int]]) -> np.ndarray:
    ranks = np.zeros(scores.shape[0])
    for q, row in enumerate(scores):
        order = np.argsort(row)[::-1]
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        ranks[q] = min(position[g] for g in gts[q])
    return ranks


def _recalls(ranks: np.ndarray) -> tuple[float, float, float]:
    n = len(ranks)
    return tuple(100.0 * len(np.where(ranks < k)[0]) / n for k in (1, 5, 10))


def retrieval_metrics(i2t, t2i, txt2img, img2txt) -> dict:
    """Official ``itm_eval`` metrics plus median / mean ranks.

    ``i2t`` ``[N_v, N_t]`` video->text scores, ``t2i`` ``[N_t, N_v]`` text->video scores (numpy or
    torch). ``img2txt[v]``: the ground-truth text id(s) of video v; ``txt2img[t]``: the
    ground-truth video id(s) of text t (several for SSv2). Each map is a dict keyed 0..N-1 or a
    list; each value an int or a list of ints.

    Returns the official keys (``txt_*`` = video->text, ``img_*`` = text->video, ``r_mean``) and
    ``txt_medr``, ``txt_meanr``, ``img_medr``, ``img_meanr``: median and mean of the **1-based**
    best ground-truth rank per query (a median may end in .5). Everything is rounded to 2 decimals.
    """
    i2t = _as_matrix(i2t, "i2t")
    t2i = _as_matrix(t2i, "t2i")
    n_v, n_t = i2t.shape
    if t2i.shape != (n_t, n_v):
        raise ValueError(f"t2i must be [N_t, N_v] = {[n_t, n_v]} to match i2t {list(i2t.shape)}, "
                         f"got {list(t2i.shape)}")
    txt_ranks = _ranks(i2t, _gt_lists(img2txt, n_v, n_t, "img2txt"))
    img_ranks = _ranks(t2i, _gt_lists(txt2img, n_t, n_v, "txt2img"))
    tr1, tr5, tr10 = _recalls(txt_ranks)
    ir1, ir5, ir10 = _recalls(img_ranks)
    tr_mean = (tr1 + tr5 + tr10) / 3
    ir_mean = (ir1 + ir5 + ir10) / 3
    result = {
        "txt_r1": tr1, "txt_r5": tr5, "txt_r10": tr10, "txt_r_mean": tr_mean,
        "img_r1": ir1, "img_r5": ir5, "img_r10": ir10, "img_r_mean": ir_mean,
        "r_mean": (tr_mean + ir_mean) / 2,
        "txt_medr": np.median(txt_ranks + 1), "txt_meanr": np.mean(txt_ranks + 1),
        "img_medr": np.median(img_ranks + 1), "img_meanr": np.mean(img_ranks + 1),
    }
    return {k: round(float(v), 2) for k, v in result.items()}


def qa_accuracy(predictions: Mapping, gold: Mapping) -> float:
    """Exact-string-match accuracy in percent over the ``gold`` questions, rounded to 2 decimals.

    ``predictions`` and ``gold`` map question id -> answer string. A gold question without a
    prediction counts as wrong; a prediction for a question not in ``gold`` is an error (it
    usually means the ids do not line up, e.g. int vs str keys).
    """
    if not isinstance(predictions, Mapping) or not isinstance(gold, Mapping):
        raise ValueError("qa_accuracy expects two dicts question_id -> answer, got "
                         f"{type(predictions).__name__} and {type(gold).__name__}")
    if not gold:
        raise ValueError("qa_accuracy: the gold answers are empty")
    unknown = [q for q in predictions if q not in gold]
    if unknown:
        raise ValueError(f"qa_accuracy: predictions for {len(unknown)} question ids not in the gold set, "
                         f"e.g. {unknown[:3]!r} (gold ids look like {list(gold)[:3]!r})")
    correct = [q in predictions and predictions[q] == answer for q, answer in gold.items()]
    return round(100.0 * float(np.mean(correct)), 2)
