"""One resolver: the evaluation, flops, bench and visualize read the same overrides into the same
frames, k_test, text lengths and schedule, or refuse them with the same message."""

from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf, open_dict

from vidtldr.analysis import bench, flops
from vidtldr.analysis import visualize as viz
from vidtldr.config_utils import CONFIG_DIR, compose_config
from vidtldr.errors import ConfigError
from vidtldr.run.runspec import resolve, resolve_model

TOOLS = ("config", "flops", "bench", "visualize", "fidelity")  # the evaluation's config, then each tool's
DATASETS = sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))
MODELS = ("tiny", "umt_b", "umt_l", "videomae_b")
MERGES = ("none", "vidtldr", "tome", "random", "random merge.r=published", "tome merge.r=umt_fractions")


def _outcome(resolver, cfg):
    try:
        s = resolver(cfg)
    except ConfigError as exc:
        return ("refused", str(exc))
    return (s.task, s.num_frames, s.k_test, s.max_txt_l, s.max_q_len, s.max_a_len, tuple(s.schedule))


@pytest.fixture(scope="module")
def walk():
    """outcome[tool][(model, dataset, merge)], every dataset config x backbone x merge. Groups
    model and merge are composed by Hydra per tool; the (self-contained) dataset files are then
    swapped in, which is what selecting the group does, at a fraction of the cost."""
    datasets = {d: OmegaConf.load(CONFIG_DIR / "dataset" / f"{d}.yaml") for d in DATASETS}
    out = {tool: {} for tool in TOOLS}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for tool in TOOLS:
            resolver = resolve if tool == "config" else resolve_model  # eval: the full run resolution
            for model in MODELS:
                for merge in MERGES:
                    base = compose_config([f"model={model}", *(f"merge={merge}".split())], config_name=tool)
                    for name, ds in datasets.items():
                        cfg = base.copy()
                        with open_dict(cfg):
                            cfg.dataset = ds
                        out[tool][(model, name, merge)] = _outcome(resolver, cfg)
    return out


@pytest.mark.parametrize("tool", TOOLS[1:])
def test_every_tool_resolves_like_the_evaluation(walk, tool):
    assert len(walk["config"]) == len(DATASETS) * len(MODELS) * len(MERGES) >= 200
    differ = {k: (walk["config"][k], v) for k, v in walk[tool].items() if v != walk["config"][k]}
    assert not differ, f"{tool} differs from the evaluation on {len(differ)} cases, e.g. {next(iter(differ.items()))}"


def test_the_walk_covers_both_outcomes(walk):
    outcomes = walk["config"].values()
    refused = [o for o in outcomes if o[0] == "refused"]
    assert refused and len(refused) < len(walk["config"])
    # the cases, as the evaluation resolves them
    assert walk["config"][("umt_l", "lsmdc_zs", "none")][3] == 96
    assert walk["config"][("umt_b", "lsmdc_zs", "none")][3] == 64
    assert walk["config"][("umt_b", "didemo_val", "vidtldr")][6][:4] == (250, 150, 150, 150)
    assert "zero-shot" in walk["config"][("umt_b", "msrvtt_zs", "vidtldr")][1]
    assert "only has a vid-TLDR schedule" in walk["config"][("tiny", "msrvtt", "tome")][1]
    assert walk["config"][("tiny", "msrvtt", "none")][1:3] == (4, 4)  # the tiny model's caps
    # VideoMAE: vid-TLDR's default is umt_fractions (UMT-B MSRVTT's 600/2352, 200/1752, 100/1552);
    # other reducers need merge.r, which umt_fractions is for any of them; no retrieval heads
    kinetics = ("classification", 16, None, None, None, None, (0.2552, 0.1142, 0.0645) + (0,) * 9)
    assert walk["config"][("videomae_b", "kinetics400", "vidtldr")] == kinetics
    assert walk["config"][("videomae_b", "kinetics400", "tome merge.r=umt_fractions")] == kinetics
    assert "merge.r explicitly (e.g. merge.r=umt_fractions)" in walk["config"][("videomae_b", "kinetics400", "tome")][1]
    assert walk["config"][("videomae_b", "msrvtt", "none")][0] == "refused"
    assert walk["config"][("umt_l", "msrvtt_zs", "tome merge.r=umt_fractions")][6][:3] == (0.2339, 0.222, 0)  # 550/2352, 400/1802 up to 4 decimals
    assert "msrvtt/tiny" in walk["config"][("tiny", "msrvtt", "tome merge.r=umt_fractions")][1]


# The four disagreements, through each tool's own entry point (Hydra composition included).

def test_flops_counts_umt_l_zero_shot_lsmdc_text_at_96(capsys):
    rep = flops.main_cli(compose_config(["model=umt_l", "dataset=lsmdc_zs", "merge=none", "trace=false"], "flops"))
    assert rep["extra"]["text_per_query"]["max_txt_l"] == 96 and rep["num_frames"] == 4


def test_flops_accepts_published_on_the_val_split(capsys):
    rep = flops.main_cli(compose_config(["model=umt_b", "dataset=didemo_val", "merge.r=published", "trace=false"],
                                        "flops"))
    assert rep["tokens_per_layer"][-1] == 1652  # didemo's published UMT-B schedule


@pytest.mark.parametrize("overrides, message", [
    (["model=umt_b", "dataset=msrvtt_zs"], "no schedule was published for zero-shot runs"),
    (["model=tiny", "merge=tome"], "model=tiny only has a vid-TLDR schedule"),
])
def test_visualize_and_flops_refuse_what_the_evaluation_refuses(tmp_path, capsys, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(compose_config(overrides))
    with pytest.raises(ConfigError, match=message):
        flops.main_cli(compose_config([*overrides, "trace=false"], "flops"))
    with pytest.raises(SystemExit):
        viz.main([f"out={tmp_path}", *overrides])
    assert message in capsys.readouterr().err


def test_bench_skips_a_baseline_with_the_evaluations_message():
    cfg = compose_config(["model=tiny"], "bench")
    execs, skipped = bench.plan_executions(cfg, ["none", "vidtldr", "tome"], ["fused"], baseline_r="published")
    assert [e.merge for e in execs] == ["none", "vidtldr"]
    assert skipped[0]["merge"] == "tome" and "only has a vid-TLDR schedule" in skipped[0]["why"]
    assert execs[1].schedule[:2] == [48, 24]
    assert json.loads(json.dumps(skipped)) == skipped  # recorded as plain data, nothing lost


def test_umt_fractions_is_no_published_reference_for_tune_and_compare():
    from vidtldr.run.runspec import published_schedule

    # VideoMAE's default resolves to umt_fractions, which is borrowed from UMT: no "published vid-TLDR" point
    assert published_schedule(compose_config(["model=videomae_b", "dataset=kinetics400"]), 12) is None
    assert published_schedule(compose_config(["model=tiny"]), 4) == [48, 24, 0, 0]
    assert published_schedule(compose_config(["model=umt_b", "dataset=msrvtt"]), 12)[:3] == [600, 200, 100]


def _registered_reducers():
    from vidtldr.reduce import REDUCERS, discover_reducers

    discover_reducers()
    return sorted(set(REDUCERS) - {"none"})


@pytest.mark.parametrize("name", _registered_reducers())
def test_umt_fractions_is_the_explicit_fraction_list_for_every_reducer(name):
    # UMT-B MSRVTT's 600/2352, 200/1752, 100/1552 up to 4 decimals, what merge.r=[0.2552,0.1142,0.0645] gives
    named = resolve_model(compose_config(["model=videomae_b", "dataset=kinetics400", f"merge={name}",
                                          "merge.r=umt_fractions"], "flops"))
    listed = resolve_model(compose_config(["model=videomae_b", "dataset=kinetics400", f"merge={name}",
                                           "merge.r=[0.2552,0.1142,0.0645]"], "flops"))
    assert named.schedule == listed.schedule == [0.2552, 0.1142, 0.0645] + [0] * 9
    assert named.schedule_spec == "umt_fractions" and named.schedule_note.startswith("umt_fractions: no vid-TLDR")
    assert listed.schedule_note is None
