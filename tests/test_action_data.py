"""Action-recognition data: the three annotation formats, VideoMAE's test views (frame indices and
crops worked out by hand), decoding of every view, tiny data in both formats, `data.inspect`."""

import json

import pytest
import torch

from vidtldr.data import classification as cf
from vidtldr.data.annotations import load_split
from vidtldr.data.dataset import ViewSpec, ViewsDataset, make_loader, read_views
from vidtldr.data.inspect import main as inspect_main
from vidtldr.data.tiny import CLIPS, encode_clips
from vidtldr.data.tiny_action import official_files, write_tiny_action
from vidtldr.data.transforms import normalize, resize_short_side_uint8
from vidtldr.data.video import read_frames_with_info
from vidtldr.data.views import crop_boxes, interval_clips, plan_views, segment_clips, short_side_size
from vidtldr.errors import AnnotationError

K400 = {"name": "kinetics400", "task": "classification", "reader": "videomae_list", "annotation": "k400_val.csv",
        "classes": None, "video_dir": "kinetics400", "num_classes": 400, "sampling": "interval"}
SSV2 = {"name": "ssv2", "task": "classification", "reader": "videomae_list", "annotation": "ssv2_val.csv",
        "classes": None, "video_dir": "ssv2_cls", "num_classes": 174, "sampling": "segment"}


# --- formats ---------------------------------------------------------------------------------

def test_videomae_list_lines():
    text = "abseiling/a b.mp4 0\n\nx/y.mp4   399\n"
    assert cf.parse_videomae_list(text, "val.csv") == (["abseiling/a b.mp4", "x/y.mp4"], [0, 399])
    with pytest.raises(AnnotationError, match="val.csv, line 2: the class index 'seven'"):
        cf.parse_videomae_list("a.mp4 1\nb.mp4 seven\n", "val.csv")
    with pytest.raises(AnnotationError, match="line 1: expected '<video path> <class index>'"):
        cf.parse_videomae_list("lonely\n", "val.csv")


def test_kinetics_csv_rows_and_names():
    classes = ["abseiling", "air drumming", "zumba"]
    text = ("label,youtube_id,time_start,time_end,split\n"
            "zumba,--07WQ2iBlw,1,11,val\n\"air drumming\",abc,40,50,val\n")
    names, labels = cf.parse_kinetics_csv(text, classes, "k.csv")
    assert names == ["--07WQ2iBlw_000001_000011.mp4", "abc_000040_000050.mp4"] and labels == [2, 1]
    names, _ = cf.parse_kinetics_csv(text, classes, "k.csv", "{label}/{youtube_id}.mp4")
    assert names == ["zumba/--07WQ2iBlw.mp4", "air drumming/abc.mp4"]
    with pytest.raises(AnnotationError, match="line 2: class 'zumba' is not in the class-name list"):
        cf.parse_kinetics_csv(text, classes[:2], "k.csv")
    with pytest.raises(AnnotationError, match=r"missing columns \['time_end'\]"):
        cf.parse_kinetics_csv("label,youtube_id,time_start\n", classes, "k.csv")


def test_class_names_refuse_gaps_and_repeats():
    assert cf.parse_class_names("a\nb\n\n", "c.txt") == ["a", "b"]
    with pytest.raises(AnnotationError, match="line 2: empty class name"):
        cf.parse_class_names("a\n\nb\n", "c.txt")
    with pytest.raises(AnnotationError, match="class 'a' on lines 1 and 3"):
        cf.parse_class_names("a\nb\na\n", "c.txt")


def test_ssv2_templates_map_through_labels_json():
    labels = {"Holding something": "1", "Moving something up": "0"}
    records = [{"id": "74225", "label": "moving cup up", "template": "Moving [something] up"},
               {"id": 3, "template": "Holding [something]"}]
    names, out, classes = cf.parse_ssv2(records, labels, "validation.json")
    assert names == ["74225.webm", "3.webm"] and out == [0, 1]
    assert classes == ["Moving something up", "Holding something"]
    with pytest.raises(AnnotationError, match="record 0: template 'Pushing \\[something\\]' is not in labels.json"):
        cf.parse_ssv2([{"id": "1", "template": "Pushing [something]"}], labels, "validation.json")
    with pytest.raises(AnnotationError, match="0..1, each once"):
        cf.parse_ssv2(records, {"a": "0", "b": "0"}, "validation.json")


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(AnnotationError, match="record 1 has class 400, outside 0..399"):
        cf.check_labels([0, 400], 400, "val.csv")


# --- views, by hand ----------------------------------------------------------------------------

def test_interval_clips_of_kinetics():
    # 300 frames, every 4th: 0, 4, ..., 296 (75 taken); 5 clip starts int(c * 59 / 4): 0, 14, 29, 44, 59
    clips = interval_clips(300, 16, 4, 5)
    assert [c[0] for c in clips] == [0, 56, 116, 176, 236]
    assert clips[1] == list(range(56, 120, 4)) and clips[-1][-1] == 296
    # 40 frames: 0..36 (10 taken), the last repeated to 16; every clip is that one run
    short = interval_clips(40, 16, 4, 5)
    assert short == [list(range(0, 40, 4)) + [36] * 6] * 5
    assert interval_clips(300, 16, 4, 1) == [list(range(116, 180, 4))]  # one clip: the centre (start 59 // 2 = 29)


def test_segment_clips_of_ssv2():
    # 48 frames in 16 segments of 3: starts 0, 3, ..., 45 and middles int(3k + 1.5) = 1, 4, ..., 46
    assert segment_clips(48, 16, 2) == [list(range(0, 48, 3)), list(range(1, 48, 3))]
    # 24 frames: tick 1.5, starts int(1.5k), middles int(1.5k + 0.75)
    starts, middles = segment_clips(24, 16, 2)
    assert starts == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22]
    assert middles == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23]
    assert segment_clips(48, 16, 1) == [list(range(1, 48, 3))]  # one clip: the middles
    # 5 frames: tick 5/16 = 0.3125, int(0.3125 k) for k = 0..15
    assert segment_clips(5, 16, 2)[0] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


def test_short_side_resize_and_three_crops():
    assert short_side_size(240, 320, 224) == (224, 298)      # 224 * 320 / 240 = 298.67 -> 298
    assert short_side_size(640, 360, 224) == (398, 224)      # portrait: 224 * 640 / 360 = 398.2
    assert short_side_size(100, 100, 224) == (224, 224)
    # landscape 224 x 298: 74 spare columns, crops at 0, 37, 74
    assert [(c.top, c.left) for c in crop_boxes(224, 298, 224, 3)] == [(0, 0), (0, 37), (0, 74)]
    assert [(c.top, c.left) for c in crop_boxes(398, 224, 224, 3)] == [(0, 0), (87, 0), (174, 0)]
    assert [(c.top, c.left) for c in crop_boxes(224, 298, 224, 1)] == [(0, 37)]
    plan = plan_views(300, 240, 320, num_frames=16, sampling="interval", clips=5, crops=3, size=224, interval=4)
    assert plan.num_views == 15 and plan.describe()["resized_hw"] == [224, 298]


# --- decoding -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return encode_clips(tmp_path_factory.mktemp("clips"))


def test_read_views_decodes_every_clip_and_crop(clips):
    # v0: 20 frames, 64x48 -> short side 32: 42x32 (int(32 * 64 / 48) = 42); crops at 0, 5, 10
    spec = ViewSpec(num_frames=4, sampling="interval", clips=2, crops=3, size=32, interval=4)
    views, plan = read_views(clips[0], spec)
    assert views.shape == (6, 4, 3, 32, 32) and views.dtype == torch.float32
    assert plan.clips == [[0, 4, 8, 12], [4, 8, 12, 16]]  # 5 taken (0..16), room 1: starts 0 and 1
    assert [c.left for c in plan.crops] == [0, 5, 10]
    frames, _ = read_frames_with_info(clips[0], 20)  # every frame (middle sampling of 20 from 20)
    resized = resize_short_side_uint8(frames, 32)
    assert resized.shape == (20, 3, 32, 42)
    expected = normalize(resized[[4, 8, 12, 16]][:, :, :, 5:37])  # clip 1, crop 1 = view 4
    assert torch.equal(views[4], expected)


def test_views_dataset_and_loader_batch(clips):
    spec = ViewSpec(num_frames=4, sampling="segment", clips=2, crops=1, size=32)
    loader = make_loader(ViewsDataset([clips[0], clips[5]], spec), batch_size=2)
    batch = next(iter(loader))
    assert batch["frames"].shape == (2, 2, 4, 3, 32, 32) and batch["ok"].tolist() == [True, True]


def test_views_from_the_frame_cache_equal_the_decoded_views(clips, tmp_path, monkeypatch):
    from vidtldr.data import dataset as dataset_module
    from vidtldr.run.frame_cache import FrameCache

    spec = ViewSpec(num_frames=4, sampling="interval", clips=2, crops=3, size=32, interval=4)
    cache = FrameCache(tmp_path / "frames", 1 << 30)
    first = ViewsDataset([clips[0]], spec, frame_cache=cache)[0]
    assert first["from_cache"] is False and torch.equal(first["frames"], read_views(clips[0], spec)[0])

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(dataset_module, "open_video", no_decoding)
    again = ViewsDataset([clips[0]], spec, frame_cache=cache)[0]
    assert again["from_cache"] is True and torch.equal(again["frames"], first["frames"])


@pytest.mark.parametrize("change", [dict(clips=3), dict(crops=1), dict(num_frames=2), dict(interval=2), dict(size=16),
                                    dict(sampling="segment", interval=None)])
def test_every_view_setting_is_part_of_the_frame_cache_key(change):
    spec = ViewSpec(num_frames=4, sampling="interval", clips=2, crops=3, size=32, interval=4)
    other = ViewSpec(**{**spec.__dict__, **change})
    assert ViewsDataset([], other).frames_key() != ViewsDataset([], spec).frames_key()


# --- tiny data, both formats ----------------------------------------------------------------------

@pytest.mark.parametrize("cfg, official_reader", [(K400, "kinetics_csv"), (SSV2, "ssv2_json")])
def test_tiny_data_reads_the_same_in_both_formats(tmp_path, clips, cfg, official_reader):
    files = write_tiny_action(tmp_path, cfg, clips)
    listed = load_split(cfg, tmp_path)
    assert listed.labels == [2, 0, 1, 2, 3, 0] and listed.class_names is None
    assert all((tmp_path / "videos" / cfg["video_dir"] / n).is_file() for n in listed.video_names)
    official_cfg = dict(cfg, reader=official_reader, annotation=files["official"], classes=files["classes"])
    official = load_split(official_cfg, tmp_path)
    assert official.video_names == listed.video_names and official.labels == listed.labels
    assert len(official.class_names) == cfg["num_classes"]
    family = "kinetics" if official_reader == "kinetics_csv" else "ssv2"
    assert (files["official"], files["classes"]) == official_files(cfg["annotation"], family)


def test_num_classes_mismatch_names_the_file(tmp_path, clips):
    files = write_tiny_action(tmp_path, K400, clips)
    cfg = dict(K400, reader="kinetics_csv", annotation=files["official"], classes=files["classes"], num_classes=300)
    with pytest.raises(AnnotationError, match="400 classes listed, the dataset config says num_classes: 300"):
        load_split(cfg, tmp_path)


def test_inspect_prints_the_views(clips, capsys):
    assert inspect_main([str(clips[0]), "--sampling", "interval", "--frame-interval", "4", "--num-frames", "4",
                         "--clips", "2", "--crops", "3", "--size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    res = json.loads(out[-1])
    assert res["clips"] == [[0, 4, 8, 12], [4, 8, 12, 16]] and res["crops_top_left"] == [[0, 0], [0, 5], [0, 10]]
    assert res["views"] == 6 and any("crop 1: top 0, left 5" in line for line in out)
    assert len(CLIPS) == 7


def test_validate_reads_the_whole_file_formats(tmp_path, clips):
    from vidtldr.data.validate import validate_dataset

    write_tiny_action(tmp_path, K400, clips)
    cfg = dict(K400, num_frames=16, trimmed30=False)
    report = validate_dataset(cfg, tmp_path, decode=True, use_manifest=False)
    assert report["ok"] and report["counts"] == {"records": 6, "videos": 6, "classes": 4}
    # the manifest expects the real split's 400 classes
    assert [p["message"] for p in validate_dataset(cfg, tmp_path, decode=False)["problems"]] == \
        ["classes: found 4, manifest expects 400"]
    anno = tmp_path / "anno_downstream" / "k400_val.csv"
    anno.write_text(anno.read_text() + "missing.mp4 1\n")
    report = validate_dataset(cfg, tmp_path, decode=False, use_manifest=False)
    assert [p["kind"] for p in report["problems"]] == ["missing_video"] and report["num_video_files"] == 7
    anno.write_text("broken.mp4 x\n")
    report = validate_dataset(cfg, tmp_path, decode=False, use_manifest=False)
    assert report["problems"][0]["kind"] == "schema" and "line 1" in report["problems"][0]["message"]
