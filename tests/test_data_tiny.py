"""The tiny synthetic dataset: layout per dataset config, readers' maps on it, clip properties."""

import json
from pathlib import Path

import pytest
import torch

from vidtldr.data.annotations import load_split
from vidtldr.data.dataset import VideoDataset, make_loader
from vidtldr.data.registry import all_dataset_configs, dataset_names
from vidtldr.data.tiny import CLIPS, make_tiny_dataset, write_clip
from vidtldr.data.video import DECORD_BAD_WIDTHS, probe_video, read_frames_with_info
from vidtldr.errors import VideoError

V = [c.name for c in CLIPS]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_dataset(root)
    return root


def _cfg(name):
    return all_dataset_configs()[name]


def test_configs_cover_every_benchmark_and_zero_shot_variant():
    names = set(dataset_names())
    assert {"msrvtt", "msvd", "didemo", "anet", "lsmdc", "ssv2_label", "ssv2_template", "msrvtt_qa", "msvd_qa",
            "anet_qa", "msrvtt_zs", "msvd_zs", "didemo_zs", "anet_zs", "lsmdc_zs"} <= names
    cfgs = all_dataset_configs()
    # docs/protocol.md: text lengths (section 3), frames (section 6)
    assert [cfgs[n]["max_txt_l"] for n in ("msrvtt", "msvd", "anet", "didemo", "lsmdc", "ssv2_label", "ssv2_template")] \
        == [32, 64, 150, 64, 96, 25, 25]
    assert [cfgs[n]["max_txt_l"] for n in ("msrvtt_zs", "msvd_zs", "anet_zs", "didemo_zs", "lsmdc_zs")] \
        == [32, 64, 150, 64, 64]
    assert cfgs["lsmdc_zs"]["max_txt_l_by_backbone"] == {"umt_l": 96}  # L/16 zero-shot LSMDC: 96 tokens
    assert all(cfgs[n]["num_frames"] == 4 for n in names if n.endswith("_zs") or "_zs_" in n)
    assert all((cfgs[n]["max_q_len"], cfgs[n]["max_a_len"]) == (25, 5) for n in ("msrvtt_qa", "msvd_qa", "anet_qa"))
    assert sorted(n for n in names if cfgs[n]["trimmed30"]) == sorted(n for n in names if n.startswith("didemo"))
    assert all(c["k_test"] == 128 for c in cfgs.values() if c["task"] != "classification")
    # action recognition (VideoMAE's test protocol): frames, views, classes; no texts to re-rank
    assert [(cfgs[n]["num_frames"], cfgs[n]["test_clips"], cfgs[n]["test_crops"], cfgs[n]["num_classes"],
             cfgs[n]["k_test"]) for n in ("kinetics400", "ssv2")] == [(16, 5, 3, 400, None), (16, 2, 3, 174, None)]
    assert (cfgs["kinetics400"]["sampling"], cfgs["kinetics400"]["frame_interval"], cfgs["ssv2"]["sampling"]) \
        == ("interval", 4, "segment")


@pytest.mark.parametrize("name", dataset_names())
def test_every_config_loads_on_tiny_data_and_its_videos_exist(tiny, name):
    split = load_split(_cfg(name), tiny)
    assert len(split) > 0
    for path in split.videos:
        assert (tiny / "videos" / _cfg(name)["video_dir"]).as_posix() in path
        assert Path(path).is_file(), path


def test_msvd_caption_lists(tiny):
    s = load_split(_cfg("msvd"), tiny)
    assert s.txt2img == [0, 0, 0, 1, 2, 3, 3, 3, 3, 4, 4]
    assert s.img2txt == [[0, 1, 2], [3], [4], [5, 6, 7, 8], [9, 10]]
    assert s.texts[2] == "red block white bar" and s.texts[8] == "" and s.texts[9] == "a cyan block"


def test_didemo_and_anet_paragraphs(tiny):
    d = load_split(_cfg("didemo"), tiny)
    assert d.video_names == [V[6], V[0], V[3], V[4]]
    assert d.texts[1] == "a red block a white bar moves fast"
    assert d.txt2img == [0, 1, 2, 3] and d.img2txt == [[0], [1], [2], [3]]
    a = load_split(_cfg("anet"), tiny)
    assert a.texts[0] == "an orange block appears the bar moves right it keeps going for half a minute"


def test_lsmdc_repeated_video_gets_two_ids(tiny):
    s = load_split(_cfg("lsmdc"), tiny)
    assert s.video_names == [V[0], V[1], V[2], V[1], V[5]]
    assert s.img2txt == [[0], [1], [2], [3], [4]]
    assert s.texts[2] == "he turns and sees blue"


def test_ssv2_multi_video_ground_truth(tiny):
    lab = load_split(_cfg("ssv2_label"), tiny)
    assert lab.txt2img == [[0], [1, 2], [3], [4, 5, 6]] and lab.img2txt == [0, 1, 1, 2, 3, 3, 3]
    assert lab.texts[2] == "pushing a yellow block across" and lab.multi_video_gt
    tpl = load_split(_cfg("ssv2_template"), tiny)
    assert tpl.txt2img == [[0, 1, 2], [3], [4, 5]] and tpl.img2txt == [0, 0, 0, 1, 2, 2]
    assert tpl.texts[1] == "pushing [something] across [something]"


def test_qa_formats(tiny):
    m = load_split(_cfg("msrvtt_qa"), tiny)
    assert m.question_ids == list(range(7))
    assert m.questions[5] == "is the clip portrait landscape"
    assert m.answers[0] == "red" and "ice cream" in m.answer_list
    v = load_split(_cfg("msvd_qa"), tiny)
    assert all(isinstance(q, str) for q in v.question_ids)
    a = load_split(_cfg("anet_qa"), tiny)
    assert a.question_ids[0] == "v0_20f_10fps_64x48_0"
    assert set(m.answers) <= set(m.answer_list)


def test_annotation_files_are_ascii_json(tiny):
    files = sorted((tiny / "anno_downstream").glob("*.json"))
    assert files, "no annotation files generated"
    for f in files:
        assert json.loads(f.read_bytes().decode("ascii")), f  # ASCII, valid JSON, not empty


def test_clip_properties(tiny):
    d = tiny / "videos" / "msrvtt"
    infos = {c.name: probe_video(d / c.name, 12) for c in CLIPS}
    for c in CLIPS:
        info = infos[c.name]
        assert info.num_video_frames == c.frames
        assert info.fps == pytest.approx(float(c.fps), abs=1e-9)
        assert (info.width, info.height) == (c.width, c.height)
        assert c.width not in DECORD_BAD_WIDTHS
    assert any(c.frames < 4 for c in CLIPS) and any(c.frames < 12 for c in CLIPS)
    assert len({(c.width, c.height) for c in CLIPS}) >= 4 and len({c.fps for c in CLIPS}) >= 4
    long = [c for c in CLIPS if c.frames / c.fps > 30]
    assert long and long[0].name in load_split(_cfg("didemo"), tiny).video_names


def test_short_clip_padding_and_long_clip_trim(tiny):
    d = tiny / "videos" / "didemo"
    _, info = read_frames_with_info(d / V[2], 4)
    assert info.indices == [0, 1, 2, 2]
    _, info = read_frames_with_info(d / V[6], 12, trimmed30=True)
    assert info.num_video_frames == 160 and info.vlen_used == 150  # 5 fps: first 30 s
    assert max(info.indices) < 150
    frames, _ = read_frames_with_info(d / V[1], 12)
    assert torch.equal(frames[6:], frames[6:7].expand(6, -1, -1, -1))


def test_clip_encoding_is_deterministic(tmp_path):
    a = write_clip(tmp_path / "a.mp4", 9, 7, 40, 30, clip_index=3)
    b = write_clip(tmp_path / "b.mp4", 9, 7, 40, 30, clip_index=3)
    assert a.read_bytes() == b.read_bytes()


def test_batch_size_and_workers_do_not_change_frames(tiny):
    split = load_split(_cfg("msrvtt"), tiny)
    ds = VideoDataset(split.videos[:4], num_frames=4)

    def collect(bs, workers):
        return torch.cat([b["frames"] for b in make_loader(ds, batch_size=bs, num_workers=workers)])

    one = collect(1, 0)
    assert one.shape == (4, 4, 3, 224, 224)
    assert torch.equal(one, collect(3, 0))
    assert torch.equal(one, collect(2, 2))


def test_skip_unreadable_videos_are_reported(tiny, tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"not a video")
    good = str(tiny / "videos" / "msrvtt" / V[0])
    videos = [good, str(tmp_path / "missing.mp4"), str(bad)]
    loader = make_loader(VideoDataset(videos, 4, skip_unreadable=True), batch_size=2)
    batches = list(loader)
    ok = torch.cat([b["ok"] for b in batches]).tolist()
    assert ok == [True, False, False]
    assert [(s.index, s.path) for s in loader.skipped] == [(1, videos[1]), (2, videos[2])]
    assert "missing.mp4" in loader.skipped[0].reason and loader.num_skipped == 2
    with pytest.raises(VideoError, match="missing.mp4"):
        list(make_loader(VideoDataset(videos, 4), batch_size=2))
    with pytest.raises(VideoError, match="missing.mp4") as exc:  # raised from a worker process
        list(make_loader(VideoDataset(videos, 4), batch_size=1, num_workers=2))
    assert "Traceback" not in str(exc.value)
    with pytest.raises(VideoError, match="missing.mp4"):  # direct indexing raises too
        VideoDataset(videos, 4)[1]


def test_data_package_never_imports_models():
    import ast

    pkg = Path(__file__).resolve().parent.parent / "vidtldr" / "data"
    for src in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(src.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("vidtldr.models") for n in names), src.name


def test_make_tiny_dataset_script(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "make_tiny_dataset.py"
    res = subprocess.run([sys.executable, str(script), str(tmp_path), "msvd", "ssv2_template"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout.splitlines()[-1])["datasets"]) == {"msvd", "ssv2_template"}
    assert (tmp_path / "anno_downstream" / "ssv2_ret_template_val_small.json").is_file()
    assert len(list((tmp_path / "videos" / "ssv2").glob("*.mp4"))) == len(CLIPS)


class _SignalState(torch.utils.data.Dataset):
    """Reports, from inside the worker, how SIGTERM and SIGINT are handled there."""

    def __len__(self):
        return 1

    def __getitem__(self, i):
        import signal
        return {"term": int(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN),
                "int": int(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)}


def test_loader_workers_leave_stop_signals_to_the_main_process():
    # With a handler installed in the main process (as the runner does), a forked worker would inherit it.
    import signal
    previous = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        batch = next(iter(make_loader(_SignalState(), batch_size=1, num_workers=1).loader))
        assert int(batch["term"]) == 1 and int(batch["int"]) == 1
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the main process keeps its own
    finally:
        signal.signal(signal.SIGTERM, previous)
