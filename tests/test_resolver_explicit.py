"""The resolver takes the keys given on the command line: with a model whose own default would ignore
them (model=tiny: generated data, random weights), an explicit ``paths.data=`` makes the data source
real and an explicit ``model.checkpoint=`` loads that checkpoint; both are recorded as adjustments,
and the composed config itself is never edited."""

import pytest

from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError
from vidtldr.run.runspec import resolve


def _cfg(*overrides):
    return compose_config(["model=tiny", *overrides])


def test_an_explicit_data_folder_is_read_and_the_config_left_as_composed(tmp_path):
    cfg = _cfg(f"paths.data={tmp_path}")
    spec = resolve(cfg, explicit=["paths.data"])
    assert (spec.data_source, spec.data_root) == ("real", str(tmp_path))
    assert spec.adjusted["data.source"]["requested"] == "tiny"
    assert spec.adjusted["data.source"]["effective"] == "real"
    assert "paths.data was given" in spec.adjusted["data.source"]["reason"]
    assert cfg.data.source == "tiny"  # what was asked stays in the config (the record's "config")
    unasked = resolve(cfg)  # the same value, not given on the command line: the model's default holds
    assert unasked.data_source == "tiny" and "data.source" not in unasked.adjusted


def test_an_explicit_checkpoint_is_loaded_with_the_tiny_model(tmp_path):
    ckpt = tmp_path / "tiny.pth"
    cfg = _cfg(f"model.checkpoint={ckpt}")
    spec = resolve(cfg, explicit=["model.checkpoint"])
    assert (spec.init, spec.checkpoint, spec.checkpoint_kind) == ("checkpoint", str(ckpt), "finetuned")
    assert (spec.adjusted["model.init"]["requested"], spec.adjusted["model.init"]["effective"]) == \
        ("random", "checkpoint")
    assert cfg.model.init == "random"
    assert resolve(cfg).checkpoint is None  # not explicit: random weights, as the model says


def test_an_explicit_null_checkpoint_changes_nothing():
    spec = resolve(_cfg("model.checkpoint=null"), explicit=["model.checkpoint"])
    assert (spec.init, spec.checkpoint) == ("random", None) and "model.init" not in spec.adjusted


def test_a_model_whose_default_reads_real_data_needs_no_adjustment(tmp_path):
    spec = resolve(compose_config(["model=umt_b", f"paths.data={tmp_path}"]), explicit=["paths.data"])
    assert spec.data_source == "real" and "data.source" not in spec.adjusted


def test_contradicting_the_implied_setting_explicitly_is_refused(tmp_path):
    cfg = _cfg(f"paths.data={tmp_path}", "data.source=tiny")
    with pytest.raises(ConfigError, match=r"^paths.data= is ignored with data.source=tiny: drop one of them "
                                          r"\(or set data.source=real\)$"):
        resolve(cfg, explicit=["paths.data", "data.source"])
