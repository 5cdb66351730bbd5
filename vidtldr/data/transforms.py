"""Test-time transform (docs/protocol.md section 6): bicubic resize to size x size on uint8 without antialiasing
(torchvision 0.13.1 tensor semantics), then /255 and ImageNet mean/std. No crop, aspect ratio
not kept."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_uint8(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 ``[T,3,H,W]`` -> uint8 ``[T,3,size,size]``: float bicubic (A=-0.75), clamp, round.

    The official Resize rounds back to uint8 before normalising; skipping that step changes the
    output by up to 0.5/255 per pixel, so it is kept.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected uint8 frames [T,3,H,W], got {frames.dtype} {tuple(frames.shape)}")
    out = F.interpolate(frames.float(), size=(size, size), mode="bicubic", align_corners=False,
                        antialias=False)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def normalize(frames_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T,3,H,W]`` -> float32 ``(x/255 - mean)/std`` in float32, like ToTensor+Normalize."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    # The same three float32 operations in the same order (bit-identical), in place on one copy:
    # without the temporaries it is ~10x faster, which matters once frames come from the frame cache.
    out = frames_u8.to(torch.float32, copy=True)
    return out.div_(255).sub_(mean).div_(std)


def eval_transform(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 ``[T,3,H,W]`` -> float32 ``[T,3,size,size]``, the model's input."""
    return normalize(resize_uint8(frames, size))



def resize_short_side_uint8(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[T,3,H,W]`` resized (bilinear, no antialiasing, rounded back to uint8) so that the short
    side is ``size`` and the long side ``int(size * long / short)``: VideoMAE's test-time resize
    (its OpenCV bilinear resize uses fixed-point weights, so single pixels may differ by one level)."""
    from vidtldr.data.views import short_side_size

    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected uint8 frames [T,3,H,W], got {frames.dtype} {tuple(frames.shape)}")
    height, width = short_side_size(frames.shape[2], frames.shape[3], size)
    # torch's CPU bilinear kernel rounds differently with 1 and with several threads (torch 2.13: single
    # pixels one level apart after rounding), so the frames would depend on data.num_workers (a worker
    # runs one thread) and on OMP_NUM_THREADS. One thread everywhere makes them the same.
    with _one_thread():
        out = F.interpolate(frames.float(), size=(height, width), mode="bilinear", align_corners=False,
                            antialias=False)
    return out.clamp_(0, 255).round_().to(torch.uint8)


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
