"""Config grammar and resolution: checkpoint per (backbone, dataset), zero-shot variants, published
schedules and overrides, model caps, env-var paths, and the paper-table plans with their
missing-input check."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidtldr.errors import ConfigError, MissingFilesError, ScheduleError
from vidtldr.report import plan as runner_paper
from vidtldr.run.inputs import check_inputs
from vidtldr.run.runspec import resolve

from _eval_helpers import make_cfg


@pytest.mark.parametrize("model,dataset,file,kind", [
    ("umt_b", "msrvtt", "ret_msrvtt_b16_25m.pth", "finetuned"),
    ("umt_l", "ssv2_template", "ret_ssv2_tpl_l16_25m.pth", "finetuned"),
    ("umt_b", "msvd_qa", "qa_msvd_b16_25m.pth", "finetuned"),
    ("umt_l", "msrvtt_zs", "l16_25m.pth", "pretrained"),
    ("umt_b", "lsmdc_zs", "b16_25m.pth", "pretrained"),
    ("umt_b", "didemo_val", "ret_didemo_b16_25m.pth", "finetuned"),
])
def test_checkpoint_per_backbone_and_dataset(tmp_path, model, dataset, file, kind):
    spec = resolve(make_cfg(tmp_path, f"model={model}", f"dataset={dataset}", "merge=none", "paths.checkpoints=/ckpt"))
    assert spec.checkpoint == f"/ckpt/{file}" and spec.checkpoint_kind == kind
    explicit = resolve(make_cfg(tmp_path, f"model={model}", f"dataset={dataset}", "merge=none", "model.checkpoint=/x/y.pth"))
    assert explicit.checkpoint == "/x/y.pth"


def test_published_schedule_and_override(tmp_path):
    spec = resolve(make_cfg(tmp_path, "model=umt_b", "dataset=msrvtt"))
    assert spec.schedule == [600, 200, 100] + [0] * 9 and spec.schedule_spec == "published"
    assert spec.num_frames == 12 and spec.k_test == 128 and spec.max_txt_l == 32 and spec.setting == "finetuned"
    spec = resolve(make_cfg(tmp_path, "model=umt_l", "dataset=didemo", "merge.r=[800,100]"))
    assert spec.schedule == [800, 100] + [0] * 22 and spec.trimmed30
    spec = resolve(make_cfg(tmp_path, "model=umt_b", "dataset=msvd", "merge=none"))
    assert spec.schedule == [0] * 12
    spec = resolve(make_cfg(tmp_path, "model=umt_b", "dataset=msvd", "merge=tome"))
    assert spec.schedule == [100] * 12
    with pytest.raises(ConfigError, match="zero-shot"):
        resolve(make_cfg(tmp_path, "model=umt_b", "dataset=msrvtt_zs"))
    with pytest.raises(ConfigError, match="merge.r=100"):
        resolve(make_cfg(tmp_path, "merge=random"))
    with pytest.raises(ScheduleError, match=r"^merge.r has 13 entries but the encoder has 12 blocks$"):
        resolve(make_cfg(tmp_path, "model=umt_b", "merge.r=[1,2,3,4,5,6,7,8,9,10,11,12,13]"))


def test_tiny_model_caps_and_own_schedule(tmp_path):
    spec = resolve(make_cfg(tmp_path))
    assert (spec.model, spec.dataset, spec.merge, spec.init) == ("tiny", "msrvtt", "vidtldr", "random")
    assert spec.num_frames == 4 and spec.k_test == 4 and spec.schedule == [48, 24, 0, 0]
    assert spec.checkpoint is None and spec.data_source == "tiny"
    assert resolve(make_cfg(tmp_path, "eval.k_test=2", "eval.num_frames=2")).k_test == 2


def test_paths_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDTLDR_DATA", "/data/here")
    monkeypatch.setenv("VIDTLDR_CHECKPOINTS", "/ckpt/here")
    with_env = make_cfg(tmp_path, "model=umt_b")
    assert with_env.paths.data == "/data/here"
    assert resolve(with_env).checkpoint == "/ckpt/here/ret_msrvtt_b16_25m.pth"


def test_dataset_settings_come_from_its_keys(tmp_path):
    # The shipped configs, as the paper's tables need them (docs/architecture.md, "A new dataset").
    zs = resolve(make_cfg(tmp_path, "dataset=lsmdc_zs", "model=umt_b", "merge=none"))
    assert (zs.setting, zs.dataset_base, zs.paper_row, zs.checkpoint_kind) == ("zeroshot", "lsmdc", True, "pretrained")
    assert zs.checkpoint.endswith("/b16_25m.pth")
    official = resolve(make_cfg(tmp_path, "dataset=anet_zs_l16_official"))
    assert (official.setting, official.dataset_base, official.paper_row) == ("zeroshot", "anet_zs_l16_official", False)
    val = resolve(make_cfg(tmp_path, "dataset=didemo_val", "model=umt_b", "merge=none"))
    assert (val.setting, val.dataset_base, val.paper_row) == ("finetuned", "didemo_val", False)
    assert val.checkpoint.endswith("/ret_didemo_b16_25m.pth")  # the test split's fine-tuned checkpoint


def test_a_copy_of_a_zero_shot_config_under_another_name_is_zero_shot(tmp_path, monkeypatch):
    """The setting is the config's ``setting`` key, not a ``_zs`` in its name."""
    import shutil

    import vidtldr.config_utils as config_utils

    configs = tmp_path / "configs"
    shutil.copytree(config_utils.CONFIG_DIR, configs)
    text = (configs / "dataset" / "msrvtt_zs.yaml").read_text().replace("name: msrvtt_zs", "name: my_msrvtt")
    (configs / "dataset" / "my_msrvtt.yaml").write_text(text)
    monkeypatch.setattr(config_utils, "CONFIG_DIR", configs)
    spec = resolve(make_cfg(tmp_path, "dataset=my_msrvtt", "model=umt_b", "merge=none"))
    assert (spec.setting, spec.dataset_base, spec.checkpoint_kind, spec.num_frames) == (
        "zeroshot", "msrvtt", "pretrained", 4)
    with pytest.raises(ConfigError, match="no schedule was published for zero-shot runs"):
        resolve(make_cfg(tmp_path, "dataset=my_msrvtt", "model=umt_b", "merge.r=published"))


def test_a_dataset_config_without_its_setting_keys_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset msrvtt: missing key\(s\) setting \(e.g. setting: finetuned"):
        resolve(make_cfg(tmp_path, "~dataset.setting"))
    with pytest.raises(ConfigError, match="dataset.setting"):
        resolve(make_cfg(tmp_path, "dataset.setting=fewshot"))


def test_missing_inputs_listed_together(tmp_path):
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, "model=umt_l", "dataset=msvd_qa", f"paths.data={tmp_path}/d",
                   f"paths.checkpoints={tmp_path}/c")
    with pytest.raises(MissingFilesError) as exc:
        check_inputs(resolve(cfg), OmegaConf.to_container(cfg.dataset))
    message = str(exc.value)
    for piece in ("qa_msvd_l16_25m.pth", "msvd_qa_test.json", "msvd_qa_answer_list.json", "videos/msvd/",
                  "where to get them", "UMT model zoo"):
        assert piece in message


def test_explicit_checkpoint_gets_no_model_zoo_hint(tmp_path):
    from omegaconf import OmegaConf

    cfg = make_cfg(tmp_path, "model=umt_b", "dataset=msrvtt", "model.checkpoint=/x/nonexistent.pth",
                   f"paths.data={tmp_path}/d")
    with pytest.raises(MissingFilesError) as exc:
        check_inputs(resolve(cfg), OmegaConf.to_container(cfg.dataset))
    message = str(exc.value)
    assert "/x/nonexistent.pth" in message and "does not exist" in message
    assert "http" not in message and "model zoo, spec" not in message


def test_paper_table_plans():
    assert len(runner_paper.plan("finetuned")) == 7 * 2 * 2
    assert len(runner_paper.plan("qa")) == 2 * 2 * 2 + 2
    fig1 = runner_paper.plan("fig1")
    assert len(fig1) == 9 * 3 and {r.model for r in fig1} == {"umt_b"}
    assert [r.overrides for r in fig1 if r.dataset == "msrvtt" and r.merge == "tome"] == [("merge.r=85",)]
    zs = runner_paper.plan("zeroshot", backbones=["umt_l"], datasets=["lsmdc"])
    assert [(r.dataset, r.merge) for r in zs] == [("lsmdc_zs", "none"), ("lsmdc_zs", "vidtldr")]
    assert [r.overrides for r in zs if r.merge == "vidtldr"] == [("merge.r=umt_fractions",)]


def test_paper_table_checks_everything_before_running(tmp_path, monkeypatch):
    import vidtldr.run.runner as runner_module

    def must_not_run(*args, **kwargs):
        raise AssertionError("a run started although inputs are missing")

    monkeypatch.setattr(runner_module, "run", must_not_run)
    with pytest.raises(MissingFilesError) as exc:
        runner_paper.run_table("qa", tmp_path / "runs", [f"paths.data={tmp_path}/d", f"paths.checkpoints={tmp_path}/c"])
    message = str(exc.value)
    for name in ("qa_msrvtt_b16_25m.pth", "qa_msrvtt_l16_25m.pth", "qa_msvd_b16_25m.pth", "qa_anet_l16_25m.pth",
                 "anet_qa_test.json"):
        assert message.count(name) == 1, name


@pytest.mark.parametrize("override,key", [
    ("eval.k_test=0", "eval.k_test"), ("eval.k_test=-1", "eval.k_test"), ("eval.itm_batch=0", "eval.itm_batch"),
    ("eval.text_batch=0", "eval.text_batch"), ("data.batch_size=0", "data.batch_size"),
    ("data.num_workers=-1", "data.num_workers"), ("data.limit=0", "data.limit"),
    ("eval.num_frames=0", "eval.num_frames"), ("eval.k_test=1.5", "eval.k_test"),
])
def test_bad_numbers_are_one_line_errors_on_the_command_line(tmp_path, override, key):
    import subprocess
    import sys

    value = override.split("=", 1)[1]
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", override, f"hydra.run.dir={tmp_path / 'run'}",
                           f"paths.cache={tmp_path / 'cache'}"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and key in lines[0] and value in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache" / "tiny_data").exists()  # stopped before generating any data


@pytest.mark.parametrize("model,length", [("umt_b", 64), ("umt_l", 96), ("tiny", 64)])
def test_zero_shot_lsmdc_text_length_follows_the_backbone(tmp_path, model, length):
    # Official zero-shot LSMDC: 64 text tokens for B/16, 96 for L/16; one config serves both.
    spec = resolve(make_cfg(tmp_path, f"model={model}", "dataset=lsmdc_zs", "merge=none"))
    assert spec.max_txt_l == length
    assert resolve(make_cfg(tmp_path, f"model={model}", "dataset=lsmdc", "merge=none")).max_txt_l == 96
    with pytest.raises(ConfigError, match="max_txt_l_by_backbone"):
        resolve(make_cfg(tmp_path, f"model={model}", "dataset=lsmdc_zs", "merge=none",
                         "dataset.max_txt_l_by_backbone=[96]"))
