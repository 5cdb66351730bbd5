"""Run-length tokenization (input-level, before block 0) and compositions ``merge=A+B``: hand-worked
examples, the budget each part takes, FLOPs by hand, and the composition end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vidtldr.config_utils import compose_config
from vidtldr.cost.vision import backbone_vision_dims, reducer_cost
from vidtldr.errors import ConfigError
from vidtldr.models import vit
from vidtldr.models.config import VisionConfig
from vidtldr.reduce import ReductionState, build_reducer, reducer_class
from vidtldr.reduce.chain import Chain
from vidtldr.reduce.rlt import run_length_keep, tubelet_change
from vidtldr.run.runspec import resolve_model


def _video():
    """[1, 3, 3 frames, 4, 4] cut into 2x2 patches (one-frame tubelets): 3 steps x 4 tokens.
    Frame 1 = frame 0 except patch (0, 0) +1 everywhere (token 4 changes by 1); frame 2 = frame 1
    with patch (0, 0) back to 0 (token 8 changes by 1) and two pixels of patch (1, 1) +0.5 in one
    channel (token 11 changes by 2 * 0.5 / 12 = 1/12: 3 channels x 4 pixels)."""
    v = torch.zeros(1, 3, 3, 4, 4)
    v[:, :, 1, 0:2, 0:2] = 1.0
    v[0, 0, 2, 2:4, 2] = 0.5
    return v


def test_change_is_the_mean_absolute_difference_to_the_previous_step():
    change = tubelet_change(_video(), (3, 2, 2))
    torch.testing.assert_close(change, torch.tensor([[1.0, 0, 0, 0, 1.0, 0, 0, 1 / 12]]))


def test_two_frame_tubelets_compare_the_last_frame_with_the_first_frame_of_the_step_before():
    # frames 0, 5, 0, 0.25 in one 2x2 patch: token 1 (frames 2-3) vs token 0 (frames 0-1) compares
    # frame 3 with frame 0: |0.25 - 0| (not |0 - 0| = frame 2 vs 0, nor |0 - 5| = frame 2 vs 1)
    v = torch.tensor([0.0, 5.0, 0.0, 0.25]).view(1, 1, 4, 1, 1).expand(1, 3, 4, 2, 2)
    torch.testing.assert_close(tubelet_change(v, (2, 1, 1)), torch.tensor([[0.25]]))


def test_fixed_budget_removes_the_least_changed_and_keeps_the_first_step():
    change = tubelet_change(_video(), (3, 2, 2))  # tokens 4..11: 1, 0, 0, 0, 1, 0, 0, 1/12
    # 5 removed: the five unchanged ones (5, 6, 7, 9, 10); 6: also token 11 (1/12)
    assert run_length_keep(change, 4, 5).tolist() == [[0, 1, 2, 3, 4, 8, 11]]
    assert run_length_keep(change, 4, 6).tolist() == [[0, 1, 2, 3, 4, 8]]
    # threshold form: at most 0.05 -> the five zeros; at most 0.1 -> token 11 too; capped by the budget
    assert run_length_keep(change, 4, 8, threshold=0.05).tolist() == [[0, 1, 2, 3, 4, 8, 11]]
    assert run_length_keep(change, 4, 8, threshold=0.1).tolist() == [[0, 1, 2, 3, 4, 8]]
    assert run_length_keep(change, 4, 3, threshold=0.1).shape == (1, 9)


def test_the_reducer_gathers_survivors_with_their_own_positions_and_provenance():
    reducer = build_reducer("rlt", [6])
    x = torch.arange(12.0).view(1, 12, 1)  # token i carries the value i (its embedding + position)
    state = ReductionState(trace_source=True)
    out = reducer.reduce_input(x, state, {"video": _video(), "grid": (3, 2, 2)})
    assert out.flatten().tolist() == [0, 1, 2, 3, 4, 8]
    assert state.source[0].nonzero()[:, 1].tolist() == [0, 1, 2, 3, 4, 8] and state.size is None
    assert reducer.input_removed(12, 4) == 6 and reducer.input_removed(12, 10) == 2  # first step kept
    assert build_reducer("rlt", [0.3]).input_removed(196, 49) == 58  # int(196 * 0.3)
    assert reducer.reducing_blocks(12) == []  # nothing inside the blocks


def test_threshold_form_in_a_batch_of_videos_that_disagree_is_a_config_error():
    change = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ConfigError, match="data.batch_size=1"):
        run_length_keep(change, 1, 2, threshold=0.5)
    with pytest.raises(ConfigError, match="merge.threshold"):
        build_reducer("rlt", [2], threshold=-1)


def test_costs_by_hand_on_the_tiny_model():
    # tiny: 4 frames of 7 x 7 = 49 patches (32 px, 3 channels), width 64. rlt r=0.3 removes
    # int(196 * 0.3) = 58 before block 0; vid-TLDR [48, 24] then 138 -> 90 -> 66
    dims = backbone_vision_dims("tiny")
    cost = reducer_cost(dims, 4, build_reducer("rlt+vidtldr", [48, 24, 0, 0]))
    assert cost.tokens_per_layer == [138, 90, 66, 66, 66]
    assert cost.paper_by_op["conv"] == 196 * 3 * 32 * 32 * 64  # every tubelet is embedded (multiply-adds)
    # deciding: |difference| summed over 3 x 32 x 32 values of the 147 tokens after the first frame
    assert cost.true_by_op["input_select"] == 3 * 3 * 32 * 32 * 147
    vid = reducer_cost(dims, 4, build_reducer("vidtldr", [48, 24, 0, 0]))
    assert cost.paper < vid.paper and cost.paper_by_op["match"] == 64 * (69 * 69 + 45 * 45)  # 138 / 2, 90 / 2


def test_compositions_are_checked_part_by_part():
    assert reducer_class("rlt+vidtldr") is Chain
    for name, message in (("tome+vidtldr", "tome acts inside the blocks"), ("vidtldr+rlt", "vidtldr acts inside"), ("rlt+rlt", "must act inside"),
                          ("rlt+nope", "unknown reducer 'nope'"), ("none+vidtldr", "unknown|'none'")):
        with pytest.raises(ConfigError, match=message):
            reducer_class(name)
    with pytest.raises(ConfigError, match="merge.rlt.bogus"):
        build_reducer("rlt+vidtldr", [4], rlt={"r": 2, "bogus": 1})


@pytest.mark.parametrize("overrides, message", [
    # before: Hydra's "Could not find 'merge/rlt+'" and ~110 lines of options, exit status 1
    (["merge=rlt+"], "merge=rlt+: a part of the composition is empty; accepted: divprune, fastv, none, pitome, "),
    (["merge=+vidtldr"], "merge=+vidtldr: a part of the composition is empty; accepted: "),
    (["merge=rlt+bogus"], "merge=rlt+bogus: unknown reducer 'bogus'; accepted: "),
    (["merge=rlt+divprune+vidtldr"], "merge=rlt+divprune+vidtldr: a composition on the command line is two different"),
    # a scalar where rlt's settings belong
    (["merge=rlt+vidtldr", "merge.rlt=5"], "merge.rlt=5: expected the settings of rlt, e.g. merge.rlt.r=0.3; "
                                           "rlt takes merge.rlt.r, merge.rlt.threshold"),
    # before: "merge.r: unknown schedule name", the in-block part's key
    (["merge=rlt+vidtldr", "merge.rlt.r=abc"], "merge.rlt.r: unknown schedule name 'abc'"),
    # before: "merge.name: unknown reducer ''"
    (["merge=rlt+vidtldr", "merge.name=rlt+"], "merge=rlt+: a composition is A+B "),
])
def test_malformed_compositions_are_one_line_before_any_model(overrides, message, monkeypatch):
    from vidtldr.run import assemble
    from vidtldr.run.runspec import resolve

    def refuse(*_a, **_k):
        raise AssertionError("a model was built before the mistake was refused")

    monkeypatch.setattr(assemble, "build_model", refuse)
    with pytest.raises(ConfigError) as err:
        resolve(compose_config(overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_each_name_of_a_multirun_sweep_is_checked():
    from vidtldr.config_utils import check_merge_choice

    check_merge_choice(["merge=none,vidtldr", "merge=rlt+vidtldr,tome", "merge=choice(none,tome)"])  # the README's
    with pytest.raises(ConfigError, match=r"^merge=rlt\+: a part of the composition is empty; accepted: "):
        check_merge_choice(["-m", "merge=none,rlt+"])


def test_malformed_composition_on_the_command_line_is_one_line_and_status_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for overrides, line in ((["merge=rlt+"], "vidtldr.eval: error: merge=rlt+: a part of the composition is empty; "),
                            (["merge=rlt+vidtldr", "merge.rlt=5"], "vidtldr.eval: error: merge.rlt=5: expected the "
                                                                   "settings of rlt")):
        proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", *overrides, f"hydra.run.dir={tmp_path / 'run'}",
                               f"paths.cache={tmp_path / 'cache'}"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        (only,) = proc.stderr.strip().splitlines()
        assert only.startswith(line), only
    assert not (tmp_path / "cache" / "features").exists()


def test_composition_resolves_with_defaults_and_each_part_keeps_its_budget():
    spec = resolve_model(compose_config(["merge=rlt+vidtldr"]))
    assert spec.merge == "rlt+vidtldr" and spec.schedule == [48, 24, 0, 0]  # the tiny model's vid-TLDR schedule
    assert spec.merge_args == {"rlt": {"r": 0.3, "threshold": None}}  # rlt's own config
    reducer = spec.reducer()
    assert reducer.describe() == {"name": "rlt+vidtldr", "r": [48, 24, 0, 0], "parts": [
        {"name": "rlt", "r": [0.3] * 4, "threshold": None}, {"name": "vidtldr", "r": [48, 24, 0, 0]}]}
    spec = resolve_model(compose_config(["merge=rlt+tome", "merge.r=10", "merge.rlt.r=100"]))
    assert spec.reducer().input_removed(196, 49) == 100 and spec.schedule == [10] * 4


TINY = {"img_size": 32, "patch_size": 8, "width": 32, "depth": 4, "num_heads": 4, "num_frames": 4}  # 64 tokens


def test_composition_in_the_encoder_traces_every_embedded_patch():
    torch.manual_seed(0)
    model = vit.VisionTransformer(VisionConfig(**TINY)).eval()
    videos = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(videos, reducer=build_reducer("rlt+tome", [10, 5, 0, 0], rlt={"r": 20}), trace_source=True)
    # 64 embedded, 20 removed by rlt, then ToMe 10 and 5
    assert out.state.embedded_tokens == 64 and out.token_counts == [44, 34, 29, 29, 29]
    source = out.state.source  # over the 64 embedded tokens: the 44 survivors, each patch once
    assert source.shape == (2, 29, 64) and torch.equal(source.sum((1, 2)), torch.full((2,), 44.0))
    assert torch.equal(source.sum(2, keepdim=True), out.state.size)


@pytest.mark.slow
def test_eval_runs_the_composition_with_its_defaults(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", "merge=rlt+vidtldr", f"paths.runs={tmp_path / 'runs'}",
                           f"paths.cache={tmp_path / 'cache'}", "print_table=false"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = (tmp_path / "runs").rglob("record.json")
    record = json.loads(path.read_text())
    assert record["resolved"]["merge"] == "rlt+vidtldr" and record["token_counts"] == [138, 90, 66, 66, 66]
    assert record["gflops"]["tokens_per_layer_counted"] == [138, 90, 66, 66, 66] and "warning" not in record["gflops"]


@pytest.mark.slow
def test_eval_threshold_form_records_gflops_per_video(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", "merge=rlt", "merge.threshold=0.3", "merge.r=0.7",
                           "data.batch_size=1", f"paths.runs={tmp_path / 'runs'}", f"paths.cache={tmp_path / 'cache'}",
                           "print_table=false"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = (tmp_path / "runs").rglob("record.json")
    gflops = json.loads(path.read_text())["gflops"]
    per_video = gflops["per_video"]
    assert per_video["videos"] == 7 == len(per_video["paper"])  # the tiny MSRVTT split's 7 clips
    assert per_video["min_paper"] < per_video["max_paper"] <= gflops["base_paper"]  # the clips differ
    assert per_video["min_paper"] <= gflops["paper"] <= per_video["max_paper"]


def test_threshold_form_counts_gflops_per_video():
    from vidtldr.models.config import load_architecture
    from vidtldr.run.runner import gflops_entry

    spec = resolve_model(compose_config(["merge=rlt", "merge.threshold=0.3", "merge.r=0.7"]))
    reducer = spec.reducer()
    assert reducer.adaptive and not build_reducer("rlt", [0.3]).adaptive
    arch = load_architecture("tiny", num_frames=4)
    # two videos: one kept 138 tokens, the other all 196 (nothing below the threshold)
    entry = gflops_entry(arch, spec, reducer, [138] * 5, {"a.mp4": [138] * 5, "b.mp4": [196] * 5})
    dims = backbone_vision_dims("tiny")
    kept = reducer_cost(dims, 4, build_reducer("rlt", [58])).paper / 1e9   # the fixed budget removing 58
    unreduced = reducer_cost(dims, 4, None).paper / 1e9
    per_video = entry["per_video"]["paper"]
    assert per_video["a.mp4"] == round(kept, 4)
    # b: every tubelet embedded and run, plus deciding (true FLOPs only): the unreduced paper count
    assert per_video["b.mp4"] == round(unreduced, 4)
    assert entry["paper"] == round((kept + unreduced) / 2, 3) and entry["per_video"]["videos"] == 2


def test_threshold_form_is_refused_where_videos_cannot_differ():
    from vidtldr.run.runspec import resolve

    with pytest.raises(ConfigError, match="data.batch_size=1"):
        resolve(compose_config(["merge=rlt+vidtldr", "merge.rlt.threshold=0.3"]))
    with pytest.raises(ConfigError, match="eval.token_store=disk"):
        resolve(compose_config(["merge=rlt", "merge.threshold=0.3", "data.batch_size=1", "eval.token_store=memory"]))
    with pytest.raises(ConfigError, match="classification task"):  # views are stacked per video
        resolve(compose_config(["model=videomae_tiny", "dataset=kinetics400", "merge=rlt", "merge.threshold=0.3",
                                "data.batch_size=1"]))
    resolve(compose_config(["merge=rlt", "merge.threshold=0.3", "data.batch_size=1"]))  # accepted


def test_rlt_and_a_composition_run_on_videomae():
    from vidtldr.models.hf import videomae as hfv

    model = hfv.build_videomae(hfv.videomae_architecture("videomae_tiny"), seed=0)
    videos = torch.randn(1, 4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # 2 x 4 x 4 tubelets of 2 frames: 32 embedded, the first step's 16 always kept
        alone = model.encode_vision(videos, reducer=build_reducer("rlt", [8]))
        both = model.encode_vision(videos, reducer=build_reducer("rlt+tome", [4, 0, 2, 0], rlt={"r": 20}))
    assert alone.state.embedded_tokens == 32 and alone.token_counts == [24] * 5
    assert both.token_counts == [16, 12, 12, 10, 10]  # rlt: at most 32 - 16 = 16 removed; then ToMe 4, 2


def test_an_input_budget_above_what_rlt_may_remove_is_recorded_not_silent():
    from vidtldr.run.adjust import spec_adjustments

    # tiny: 196 embedded tokens, 49 per frame; rlt keeps the first frame, so at most 147 are removed
    cfg = compose_config(["merge=rlt", "merge.r=190"])
    adjusted = spec_adjustments(cfg, resolve_model(cfg), 196, per_step=49)
    assert adjusted["merge.input_removed"] | {"reason": None} == {"requested": 190, "effective": 147,
                                                                 "explicit": True, "reason": None}
    assert "merge.r" not in adjusted  # rlt's merge.r is not a per-block schedule to clamp
    cfg = compose_config(["merge=rlt+vidtldr", "merge.rlt.r=58"])
    assert spec_adjustments(cfg, resolve_model(cfg), 196, per_step=49).get("merge.input_removed") is None
    # the in-block part's clamp counts from the tokens left after rlt: 196 - 120 = 76 -> at most 38
    cfg = compose_config(["merge=rlt+vidtldr", "merge.rlt.r=120", "merge.r=[60]"])
    assert spec_adjustments(cfg, resolve_model(cfg), 196, per_step=49)["merge.r"]["effective"][0] == 38
