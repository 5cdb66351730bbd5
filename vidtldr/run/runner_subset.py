"""Consistent sub-splits: for ``data.limit`` (quick partial runs) and for skipped videos.

A retrieval split is cut by the videos it keeps. A text stays only if *all* its ground-truth videos
stay (otherwise its rank would be measured against a target that is not there), and a video stays
only if at least one of its texts stays (a video with no ground truth has no video->text rank).
Ids are renumbered densely, preserving order, and the maps keep their official shape (int vs list).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

from vidtldr.data.annotations import QASplit, RetrievalSplit


def _as_list(value: Any) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def subset_retrieval(split: RetrievalSplit, keep_videos: Iterable[int]) -> RetrievalSplit:
    keep_v = set(int(v) for v in keep_videos)
    while True:
        keep_t = [t for t in range(len(split.texts)) if all(v in keep_v for v in _as_list(split.txt2img[t]))]
        kept_t = set(keep_t)
        still = {v for v in keep_v if any(t in kept_t for t in _as_list(split.img2txt[v]))}
        if still == keep_v:
            break
        keep_v = still
    videos = sorted(keep_v)
    vmap = {old: new for new, old in enumerate(videos)}
    tmap = {old: new for new, old in enumerate(keep_t)}

    def remap(value: Any, mapping: dict, keep_shape_list: bool) -> Any:
        ids = [mapping[x] for x in _as_list(value) if x in mapping]
        return ids if keep_shape_list else ids[0]

    txt2img = [remap(split.txt2img[t], vmap, isinstance(split.txt2img[t], (list, tuple))) for t in keep_t]
    img2txt = [remap(split.img2txt[v], tmap, isinstance(split.img2txt[v], (list, tuple))) for v in videos]
    names = [split.video_names[v] for v in videos] if split.video_names else []
    return dataclasses.replace(split, texts=[split.texts[t] for t in keep_t], videos=[split.videos[v] for v in videos],
                               txt2img=txt2img, img2txt=img2txt, video_names=names)


def subset_qa(split: QASplit, keep_questions: Sequence[int]) -> QASplit:
    keep = list(keep_questions)
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    return dataclasses.replace(split, questions=pick(split.questions), raw_questions=pick(split.raw_questions),
                               question_ids=pick(split.question_ids), answers=pick(split.answers),
                               videos=pick(split.videos), video_names=pick(split.video_names))
