"""data.num_workers=auto: the cores this process may use, shared between ranks, one left to a CPU
encoder, capped; each worker single-threaded. Counts below are worked by hand from the rule."""

from __future__ import annotations

import pytest
import torch

import vidtldr.data.workers as W
from vidtldr.config_utils import compose_config
from vidtldr.config_values import check_settings
from vidtldr.errors import ConfigError
from vidtldr.run.runspec import check_numbers


@pytest.mark.parametrize("cores, device, ranks, expected", [
    (2, "cpu", 1, 1),     # this CI machine: one worker, one core left to the encoder
    (16, "cpu", 1, 8),    # 15 would be this rank's share; capped at 8
    (16, "cuda", 1, 8),
    (6, "cuda", 1, 6),    # a GPU encoder needs no core of its own
    (16, "cuda", 4, 4),   # four ranks on one machine: 4 cores each
    (8, "cpu", 4, 1),     # 2 cores per rank, one for the encoder
    (1, "cpu", 1, 1),     # never 0: decoding still overlaps the encoder
    (3, "cuda", 8, 1),
])
def test_auto_worker_count(cores, device, ranks, expected):
    assert W.auto_workers(cores, device, ranks) == expected


def test_auto_reads_the_cpu_set_this_process_may_use(monkeypatch):
    monkeypatch.setattr(W.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert W.usable_cores() == 3
    assert W.resolve_num_workers("auto", "cuda") == 3
    assert W.resolve_num_workers("auto", "cpu") == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert W.resolve_num_workers("auto", "cuda") == 1
    assert W.resolve_num_workers(0, "cuda") == 0 and W.resolve_num_workers("4", "cpu") == 4


def test_the_default_config_decodes_in_parallel():
    cfg = compose_config([])
    assert cfg.data.num_workers == "auto"
    check_settings(cfg)  # accepted as is
    check_numbers(cfg)


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "true", "Auto"])
def test_a_bad_worker_count_is_one_line(value):
    cfg = compose_config([f"data.num_workers={value}"])
    for check in (check_settings, check_numbers):
        with pytest.raises(ConfigError, match=r"^data.num_workers=\S+: accepted values: auto, or an integer >= 0$"):
            check(cfg)


@pytest.mark.parametrize("override, message", [
    ("data.decoder=ffmpeg", "data.decoder=ffmpeg: accepted values: decord, pyav, torchcodec"),
    ("cache.frames=yes", "cache.frames=yes: not a boolean"),
    ("cache.frames_max_gb=-1", "cache.frames_max_gb=-1: out of range; accepted: >= 0"),
    ("cache.frames_max_gb=lots", "cache.frames_max_gb=lots: not a size in GiB"),
])
def test_decoder_and_frame_cache_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.")):
        check_settings(compose_config([override]))


def test_worker_init_leaves_one_thread(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "4")  # restored after the test (worker_init sets them in a worker)
    before = torch.get_num_threads()
    try:
        W.worker_init(0)
        assert torch.get_num_threads() == 1 and W.os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_short_side_resize_does_not_depend_on_the_thread_count():
    # torch's CPU bilinear kernel rounds these random frames differently on 1 and 2 threads; a worker
    # runs one thread, so without pinning, classification frames depended on data.num_workers.
    import torch.nn.functional as F

    from vidtldr.data.transforms import resize_short_side_uint8

    x = torch.randint(0, 256, (4, 3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        raw_two = F.interpolate(x.float(), size=(64, 85), mode="bilinear", align_corners=False).round()
        two = resize_short_side_uint8(x, 64)
        torch.set_num_threads(1)
        raw_one = F.interpolate(x.float(), size=(64, 85), mode="bilinear", align_corners=False).round()
        one = resize_short_side_uint8(x, 64)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(two, one) and torch.get_num_threads() == before
    if torch.equal(raw_two, raw_one):
        pytest.skip("this CPU's bilinear kernel rounds the same on 1 and 2 threads: nothing to tell apart")
