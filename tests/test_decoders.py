"""data.decoder: PyAV (and torchcodec where it loads) read exactly the frames decord reads, for the
official indices, on the shared sample clips and on clips whose keyframes and B-frames exercise the
keyframe-interval decoding; a missing or unknown decoder is one clear line."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from vidtldr.data import decoders as D
from vidtldr.data.dataset import VideoDataset
from vidtldr.data.parity import check_decoder
from vidtldr.data.video import read_frames_with_info
from vidtldr.errors import ConfigError, VideoError


def test_pyav_equals_the_recorded_official_frames(data_formats_dir):
    items = list(check_decoder(data_formats_dir, "pyav"))
    assert len(items) == 8 * 4 * 3  # 8 videos x 4 settings x (frame count, indices, frames)
    assert [i.line() for i in items if not i.ok] == []


def _gop_clip(path, frames: int, gop: int, width: int = 64, height: int = 48):
    """H.264 with a keyframe every ``gop`` frames and 3 B-frames; every frame distinct."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": "3", "threads": "1", "sc_threshold": "0",
                          "preset": "veryfast"}
        for i in range(frames):
            img = np.full((height, width, 3), (16 + 7 * i) % 240, dtype=np.uint8)
            img[:, (2 * i) % (width - 4):(2 * i) % (width - 4) + 4] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize("frames, gop, num_frames", [(90, 10, 12), (90, 10, 4), (40, 250, 12), (7, 3, 12)])
def test_pyav_equals_decord_across_keyframe_intervals(tmp_path, frames, gop, num_frames):
    clip = _gop_clip(tmp_path / "c.mp4", frames, gop)
    want, info = read_frames_with_info(clip, num_frames)
    got, pinfo = D.read_with("pyav", clip, num_frames)
    assert (pinfo.num_video_frames, pinfo.fps, pinfo.indices) == (info.num_video_frames, info.fps, info.indices)
    assert torch.equal(got, want)
    # Decoding the non-reference frames as well changes nothing (they are skipped only when no target).
    assert torch.equal(D.read_pyav(clip, num_frames, False, skip_nonref=False)[0], want)


def test_dataset_with_pyav_gives_the_decord_frames_under_its_own_cache_key(tmp_path):
    clip = str(_gop_clip(tmp_path / "c.mp4", 30, 8))
    decord_ds, pyav_ds = VideoDataset([clip], 4, size=32), VideoDataset([clip], 4, size=32, decoder="pyav")
    assert torch.equal(decord_ds[0]["frames"], pyav_ds[0]["frames"])
    assert decord_ds.frames_key() != pyav_ds.frames_key()


def test_unknown_and_missing_decoders_are_one_line(tmp_path):
    clip = _gop_clip(tmp_path / "c.mp4", 5, 5)
    with pytest.raises(ConfigError, match=r"^data.decoder=ffmpeg: accepted values: decord, pyav, torchcodec$"):
        D.read_with("ffmpeg", clip, 4)
    with pytest.raises(VideoError, match="video not found"):
        D.read_with("pyav", tmp_path / "nope.mp4", 4)
    if D.torchcodec_available():
        assert torch.equal(D.read_frames(clip, 4, decoder="torchcodec"), D.read_frames(clip, 4))
    else:
        with pytest.raises(ConfigError, match=r"^data.decoder=torchcodec needs a working torchcodec"):
            D.read_with("torchcodec", clip, 4)


def test_pyav_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="bad.mp4"):
        D.read_with("pyav", bad, 4)
