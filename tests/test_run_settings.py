"""The resolver is complete: every execution setting of an evaluation is read once, from its key,
into the typed RunSettings the runner and the tasks use (docs/architecture.md, "Layers"); the
defaults live in configs/config.yaml only, so a key removed from the config is a one-line error
instead of a value restated somewhere in the code."""

from __future__ import annotations

import pytest

from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError
from vidtldr.run.runspec import resolve
from vidtldr.run.settings import resolve_settings


def test_each_setting_comes_from_its_own_key():
    cfg = compose_config(["eval.attention=materialized", "deterministic=true", "data.batch_size=3",
                          "data.num_workers=2", "data.on_error=skip", "eval.text_batch=5", "eval.itm_engine=pairwise",
                          "eval.itm_batch=7", "eval.itm_group_batch=9", "eval.token_store=memory",
                          "eval.token_store_dtype=fp16", "eval.token_store_window_mb=2.5", "eval.flops=false",
                          "eval.overwrite=true", "save_predictions=false", "cache.enabled=false",
                          "cache.dir=/c/features", "paths.cache=/c"])
    s = resolve_settings(cfg)
    assert (s.attention, s.deterministic, s.batch_size, s.num_workers, s.on_error, s.skip_unreadable) == (
        "materialized", True, 3, 2, "skip", True)
    assert (s.text_batch, s.itm_engine, s.itm_batch, s.itm_group_batch, s.itm_chunk) == (5, "pairwise", 7, 9, 7)
    assert (s.token_store, s.token_store_dtype, s.token_store_window_mb) == ("memory", "fp16", 2.5)
    assert (s.flops, s.overwrite, s.save_predictions, s.cache_enabled, s.cache_dir, s.cache_root) == (
        False, True, False, False, "/c/features", "/c")
    assert resolve_settings(compose_config(["eval.itm_group_batch=9"])).itm_chunk == 9  # grouped: its own batch


def test_the_run_spec_carries_them_and_the_record_shows_them():
    spec = resolve(compose_config(["eval.itm_engine=pairwise"]))
    assert spec.settings.itm_engine == "pairwise"
    assert spec.to_dict()["settings"]["itm_engine"] == "pairwise"


@pytest.mark.parametrize("key", ["eval.itm_group_batch", "eval.attention", "deterministic", "save_predictions",
                                 "data.on_error", "eval.token_store_window_mb"])
def test_a_setting_removed_from_the_config_is_one_line_naming_it(key):
    # no default restated in code: without the YAML's value the run refuses to guess
    with pytest.raises(ConfigError, match=rf"^{key}: missing from the configuration"):
        resolve_settings(compose_config([f"~{key}"]))


def test_a_setting_out_of_its_options_is_refused():
    with pytest.raises(ConfigError, match="eval.itm_engine=fast: accepted values: grouped, pairwise"):
        resolve_settings(compose_config(["eval.itm_engine=fast"]))
    with pytest.raises(ConfigError, match="eval.itm_group_batch=0: out of range"):
        resolve_settings(compose_config(["eval.itm_group_batch=0"]))
