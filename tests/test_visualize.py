"""`python -m vidtldr.visualize`: images of merged groups and vid-TLDR saliency (tiny model)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vidtldr.analysis.visualize import command as viz
from vidtldr.models.config import load_architecture
from vidtldr.models.umt import build_model
from vidtldr.reduce import build_reducer

STRIP_W = 4 * 224 + 3 * viz.GAP  # four 224x224 frames side by side


def _cli(capsys, *args):
    code = viz.main(list(args))
    out = capsys.readouterr()
    return code, out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_architecture("tiny", task="retrieval", num_frames=4))


def test_cli_writes_images_of_the_right_size(tmp_path, capsys):
    code, out = _cli(capsys, f"out={tmp_path}", "merge=vidtldr", "merge.r=[0.3,0.2,0,0]", "gif=true")
    assert code == 0
    summary = json.loads(out.out.strip().splitlines()[-1])  # last line: the JSON summary
    names = sorted(p.split("/")[-1] for p in summary["files"])
    assert names == ["frames.png", "groups.png", "overview.gif", "overview.png", "saliency_layer00.png",
                     "saliency_layer01.png"]
    assert summary["token_counts"] == [196, 138, 111, 111, 111]
    assert summary["saliency_layers"] == [0, 1]
    assert "random weights" in summary["weights"]
    for name in ("frames.png", "groups.png", "saliency_layer00.png", "saliency_layer01.png"):
        with Image.open(tmp_path / name) as img:
            assert img.size == (STRIP_W, 224) and img.mode == "RGB"
            assert "random weights" in img.info["Title"]
    with Image.open(tmp_path / "overview.gif") as gif:
        assert gif.n_frames == 4
    with Image.open(tmp_path / "overview.png") as img:
        assert img.size[0] > 600 and img.size[1] > 600
    frames = np.asarray(Image.open(tmp_path / "frames.png"))
    groups = np.asarray(Image.open(tmp_path / "groups.png"))
    sal = np.asarray(Image.open(tmp_path / "saliency_layer00.png"))
    assert not np.array_equal(frames, groups) and not np.array_equal(frames, sal)


def _patch_centres(image, grid=7, patch=32):
    c = np.arange(grid) * patch + patch // 2
    return image[c][:, c].reshape(grid * grid, 3)


def test_every_group_has_its_own_colour(model):
    # A uniform grey clip: whatever a patch looks like comes from its group's colour alone.
    frames = torch.full((4, 3, 224, 224), 128, dtype=torch.uint8)
    vis = viz.analyse(model, frames, build_reducer("tome", [40, 30, 20, 0]))
    assert vis.num_groups == 196 - 90
    colours = {}
    for f in range(4):
        img = viz.draw_groups(vis, f, singletons=True)
        centres = _patch_centres(img)
        for p in range(49):
            group = int(vis.groups[f * 49 + p])
            colours.setdefault(group, set()).add(tuple(centres[p]))
    assert all(len(c) == 1 for c in colours.values())  # one colour per group, in every frame
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)  # and all different
    # groups that span several patches exist, so the colours really mark merges
    sizes = np.bincount(vis.groups)
    assert sizes.max() > 1
    # default: single-patch tokens keep the frame's pixels, merged ones are tinted
    img = viz.draw_groups(vis, 0)
    centres = _patch_centres(img)
    for p in range(49):
        single = sizes[vis.groups[p]] == 1
        assert (tuple(centres[p]) == (128, 128, 128)) == single


def test_unheld_patches_are_hatched_and_saliency_follows_the_trace(model):
    frames = torch.randint(0, 256, (4, 3, 224, 224), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    vis = viz.analyse(model, frames, build_reducer("vidtldr", [0.3, 0.2, 0, 0]))
    assert [layer for layer, _ in vis.saliency] == [0, 1]
    first = vis.saliency[0][1]
    assert not np.isnan(first).any() and first.min() == 0 and first.max() == 1  # every patch held at block 0
    assert np.isnan(vis.saliency[1][1]).any()  # zero-saliency merges at block 0 left patches behind
    dropped = vis.groups < 0
    assert dropped.any()
    assert np.array_equal(np.isnan(vis.saliency[1][1]), np.isnan(vis.saliency[1][1]) & dropped)
    img = viz.draw_groups(vis, 0)
    p = int(np.flatnonzero(dropped[:49])[0])
    r, c = divmod(p, 7)
    rows, cols = np.indices((224, 224))
    hatch = ((rows + cols) % 8 == 0)[r * 32 + 1:(r + 1) * 32 - 1, c * 32 + 1:(c + 1) * 32 - 1]
    cell = img[r * 32 + 1:(r + 1) * 32 - 1, c * 32 + 1:(c + 1) * 32 - 1].astype(int)
    assert (cell == cell[..., :1]).all()  # grey, not a group colour
    assert (cell[hatch] == 150).all() and (cell[~hatch] <= 77).all()  # light hatch on a dimmed frame


def test_random_and_tome_have_no_saliency_maps(tmp_path, capsys):
    code, out = _cli(capsys, f"out={tmp_path}", "merge=random", "merge.r=[30,20]")
    assert code == 0
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["saliency_layers"] == [] and summary["token_counts"][-1] == 196 - 50
    assert not list(tmp_path.glob("saliency_*"))


def test_palette_is_distinct():
    colours = viz.group_colours(300)
    assert len(np.unique(colours, axis=0)) == 300


@pytest.mark.parametrize("args, message", [
    (["bogus=1"], "Could not override 'bogus'"),
    (["merge=random"], "merge=random has no default schedule"),
    (["model=nope"], "cannot compose"),
    (["video=/nonexistent/clip.mp4"], "/nonexistent/clip.mp4"),
    (["merge=tome"], "merge=tome merge.r=published"),
])
def test_cli_errors_are_one_clear_message(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        viz.main([f"out={tmp_path}", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vidtldr.visualize: error:") and message in err and "Traceback" not in err
