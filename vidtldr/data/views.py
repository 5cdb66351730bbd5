"""VideoMAE's test views: which frames and which crops each view of a video is (pure functions).

A video is evaluated as ``clips x crops`` views whose softmax outputs are averaged:

* **interval sampling** (Kinetics-400): the video's frames are taken every ``interval`` frames from
  frame 0 (the last one repeated up to ``num_frames`` when the video is short); clip ``c`` of
  ``C`` is the run of ``num_frames`` consecutive taken frames starting at
  ``int(c * (n - num_frames) / (C - 1))`` (``n`` taken frames), so the clips are evenly spaced
  from the first to the last possible start;
* **segment sampling** (SSv2): the video is cut into ``num_frames`` equal segments of
  ``tick = frames / num_frames``; clip ``c`` of ``C`` takes ``int(tick * (k + c / C))`` from
  segment ``k``: with two clips the segment starts and the segment middles;
* **spatial crops**: the frames are resized so that their short side is ``size`` (the long side
  becomes ``int(size * long / short)``), then crop ``s`` of ``S`` is the ``size x size`` square
  starting at ``int(s * (long - size) / (S - 1))`` along the long side.

With one clip or one crop (``eval.clips=1 eval.crops=1``, the quick single view) VideoMAE's own
formulas divide by zero; here the single clip is the centre one (interval sampling), the segment
middles (segment sampling), and the single crop is the centre crop.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLINGS = ("interval", "segment")


def interval_frames(num_video_frames: int, num_frames: int, interval: int) -> list[int]:
    """Every ``interval``-th frame from 0, the last repeated up to ``num_frames``."""
    if num_video_frames <= 0:
        raise ValueError(f"cannot sample from a video with {num_video_frames} frames")
    taken = list(range(0, num_video_frames, interval))
    return taken + [taken[-1]] * max(0, num_frames - len(taken))


def interval_clips(num_video_frames: int, num_frames: int, interval: int, clips: int) -> list[list[int]]:
    """Frame indices of each of ``clips`` evenly spaced clips (interval sampling)."""
    taken = interval_frames(num_video_frames, num_frames, interval)
    room = len(taken) - num_frames
    if clips == 1:
        starts = [room // 2]
    else:
        starts = [int(c * (room / (clips - 1))) for c in range(clips)]
    return [taken[s:s + num_frames] for s in starts]


def segment_clips(num_video_frames: int, num_frames: int, clips: int) -> list[list[int]]:
    """Frame indices of each of ``clips`` clips (segment sampling: one frame per segment)."""
    if num_video_frames <= 0:
        raise ValueError(f"cannot sample from a video with {num_video_frames} frames")
    tick = num_video_frames / num_frames
    offsets = [0.5] if clips == 1 else [c / clips for c in range(clips)]
    return [[min(int(tick * k + tick * off), num_video_frames - 1) for k in range(num_frames)] for off in offsets]


def clip_indices(num_video_frames: int, num_frames: int, sampling: str, clips: int,
                 interval: int | None = None) -> list[list[int]]:
    if sampling == "interval":
        if not interval or interval < 1:
            raise ValueError(f"interval sampling needs frame_interval >= 1, got {interval}")
        return interval_clips(num_video_frames, num_frames, interval, clips)
    if sampling == "segment":
        return segment_clips(num_video_frames, num_frames, clips)
    raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` after resizing the short side to ``size`` (long side truncated)."""
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


@dataclass(frozen=True)
class Crop:
    """A ``size x size`` square at ``(top, left)`` in the resized frame."""

    top: int
    left: int
    size: int


def crop_boxes(height: int, width: int, size: int, crops: int) -> list[Crop]:
    """Crops of a frame already resized to short side ``size``, along its long side."""
    long_side = max(height, width)
    if crops == 1:
        starts = [(long_side - size) // 2]
    else:
        starts = [int(s * ((long_side - size) / (crops - 1))) for s in range(crops)]
    if height >= width:  # portrait or square: crops go down the frame
        return [Crop(start, 0, size) for start in starts]
    return [Crop(0, start, size) for start in starts]


@dataclass(frozen=True)
class ViewPlan:
    """The views of one video: ``clips[c]`` frame indices, ``crops[s]`` boxes in the resized frame
    (``resized`` = its height, width); view ``c * len(crops) + s`` is clip c under crop s."""

    clips: list[list[int]]
    resized: tuple[int, int]
    crops: list[Crop]

    @property
    def num_views(self) -> int:
        return len(self.clips) * len(self.crops)

    def describe(self) -> dict:
        return {"clips": self.clips, "resized_hw": list(self.resized),
                "crops_top_left": [[c.top, c.left] for c in self.crops], "crop_size": self.crops[0].size,
                "views": self.num_views}


def plan_views(num_video_frames: int, height: int, width: int, *, num_frames: int, sampling: str, clips: int,
               crops: int, size: int, interval: int | None = None) -> ViewPlan:
    if clips < 1 or crops < 1:
        raise ValueError(f"clips and crops must be >= 1, got {clips} and {crops}")
    resized = short_side_size(height, width, size)
    return ViewPlan(clip_indices(num_video_frames, num_frames, sampling, clips, interval), resized,
                    crop_boxes(*resized, size, crops))
