"""Fault injection: interrupted, killed, concurrent and damaged runs of the tiny model.

After every fault the next run must give exactly the clean run's metrics or stop with a clear one-line
message, and a complete record is never lost. Faults fire at fixed points (monkeypatched functions,
in-process or in a child process started from a small script), never by racing a timer.
Run alone with ``pytest -m faults``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vidtldr.errors import ConfigError, DiskFullError, RunDirError, RunInterrupted
from vidtldr.run import runner
from vidtldr.run.runner import run

from _eval_helpers import make_cfg, read
from _fault_points import POINTS, arm

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The clean run: its cache (tiny data + features) is the template the scenarios copy."""
    cache = tmp_path_factory.mktemp("faults_clean")
    record = run(make_cfg(cache), cache / "runs" / "clean", progress=False)
    assert record["status"] == "complete"
    return cache, record


def fresh_cache(clean, tmp_path, features: bool = False, own_data: bool = False) -> Path:
    """A cache with the clean run's tiny data (linked, so that its features apply: the data's resolved
    folder is part of the cache key; ``own_data`` copies it instead) and, with ``features``, a copy of
    the clean run's features and checksum memos."""
    cache = tmp_path / "cache"
    cache.mkdir(parents=True)
    if own_data:
        shutil.copytree(clean[0] / "tiny_data", cache / "tiny_data")
    else:
        (cache / "tiny_data").symlink_to(clean[0] / "tiny_data", target_is_directory=True)
    if features:
        shutil.copytree(clean[0] / "features", cache / "features")
        shutil.copytree(clean[0] / "checksums", cache / "checksums")
    return cache


def same_metrics(record: dict, clean) -> bool:
    return record["status"] == "complete" and record["metrics"] == clean[1]["metrics"]


# ------------------------------------------------------------------ finished records are never lost


def test_complete_record_is_refused_not_replaced(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    first = run(make_cfg(cache), run_dir, progress=False)
    before = (run_dir / "record.json").read_bytes()
    # Before the fix a second run replaced it (by "failed" when it failed on a typo within seconds).
    with pytest.raises(RunDirError, match="eval.overwrite=true"):
        run(make_cfg(cache), run_dir, progress=False)
    assert (run_dir / "record.json").read_bytes() == before
    # A value refused by the strict checks stops before the run directory is touched.
    with pytest.raises(ConfigError, match="data.batch_size=0: out of range"):
        run(make_cfg(cache, "data.batch_size=0"), run_dir, progress=False)
    assert (run_dir / "record.json").read_bytes() == before
    again = run(make_cfg(cache, "eval.overwrite=true"), run_dir, progress=False)
    aside = list(run_dir.glob("record.replaced-*.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == before
    assert again["replaced"] == str(aside[0]) and again["metrics"] == first["metrics"]


def test_failed_run_leaves_one_line_reason_and_resumes(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    # a dataset value is resolved inside the run (the strict checks refuse a bad command-line value
    # before the run directory is touched, so that would leave no record)
    with pytest.raises(ConfigError):
        run(make_cfg(cache, "dataset.num_frames=0"), run_dir, progress=False)
    failed = read(run_dir)
    assert failed["status"] == "failed" and "num_frames" in failed["error"] and "\n" not in failed["error"]
    assert same_metrics(run(make_cfg(cache), run_dir, progress=False), clean)  # failed records are replaced


def test_failed_run_never_replaces_a_complete_record_written_meanwhile(clean, tmp_path, monkeypatch):
    """Two runs into one directory: the one that fails last must not clobber the one that finished."""
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    real_gflops = runner.gflops_entry

    def other_run_finishes_then_this_one_fails(*args, **kwargs):
        monkeypatch.setattr(runner, "gflops_entry", real_gflops)
        assert run(make_cfg(cache), run_dir, progress=False)["status"] == "complete"
        raise RuntimeError("late failure")

    monkeypatch.setattr(runner, "gflops_entry", other_run_finishes_then_this_one_fails)
    with pytest.raises(RuntimeError, match="late failure"):
        run(make_cfg(cache), run_dir, progress=False)
    assert read(run_dir)["status"] == "complete"


# ------------------------------------------------------------------ signals


def test_sigterm_is_interrupted_like_ctrl_c(clean, tmp_path, monkeypatch):
    """Before the fix SIGTERM (a scheduler's time limit) left ``status: running`` forever."""
    import vidtldr.run.runner_features as features

    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    real_save, saved = features.FeatureCache.save, []

    def save_then_sigterm(self, item, tensors):
        real_save(self, item, tensors)
        saved.append(item)
        if len(saved) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(features.FeatureCache, "save", save_then_sigterm)
    with pytest.raises(RunInterrupted):
        run(make_cfg(cache), run_dir, progress=False)
    record = read(run_dir)
    assert record["status"] == "interrupted" and record["error"] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only the run's
    monkeypatch.undo()
    resumed = run(make_cfg(cache), run_dir, progress=False)
    assert same_metrics(resumed, clean) and resumed["counts"]["videos_from_cache"] == 3


# ------------------------------------------------------------------ full disk


def test_full_disk_is_one_clear_message(clean, tmp_path, monkeypatch):
    """ENOSPC while shards are written: one DiskFullError naming the path, no temp file left, and the
    record says failed (before the fix: chained tracebacks and ``status: running``)."""
    import errno

    import vidtldr.run.cache as cache_module

    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    real_fsync, calls = cache_module.os.fsync, []

    def fsync_full(fd):
        calls.append(fd)
        if len(calls) == 3:  # the record, then the first shards: the disk fills on the third write
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(cache_module.os, "fsync", fsync_full)
    with pytest.raises(DiskFullError, match="no space left on the device holding .*features"):
        run(make_cfg(cache), run_dir, progress=False)
    monkeypatch.undo()
    assert not list(cache.rglob("*.tmp"))
    record = read(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("DiskFullError: no space left")
    assert same_metrics(run(make_cfg(cache), run_dir, progress=False), clean)


def _cli(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vidtldr.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_a_finished_run_directory_with_exit_2(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    run(make_cfg(cache), run_dir, progress=False)
    before = (run_dir / "record.json").read_bytes()
    out = _cli([f"paths.cache={cache}", f"hydra.run.dir={run_dir}", "print_table=false"], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "holds a complete record" in out.stderr and "Traceback" not in out.stderr
    assert (run_dir / "record.json").read_bytes() == before


# ------------------------------------------------------------------ damaged caches


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _garbage(path: Path) -> None:
    # Same size, other bytes, mtime kept: what a bad copy or a disk fault leaves.
    st = path.stat()
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _cache_files(cache: Path) -> dict[str, list[Path]]:
    features = cache / "features"
    stores = list(features.glob("*/stores/*"))
    dirs = sorted((d for d in features.iterdir() if d.is_dir()), key=lambda d: len(list(d.glob("*.pt"))))
    text_dir, video_dir = dirs[0], dirs[-1]  # one text shard; one shard per video
    return {"video shard": sorted(video_dir.glob("*.pt"))[:1], "text shard": list(text_dir.glob("*.pt")), "key.json": list(features.glob("*/key.json")),
            "tokens.bin": [s / "tokens.bin" for s in stores], "feat.npy": [s / "feat.npy" for s in stores],
            "index.json": [s / "index.json" for s in stores], "checksum memo": list((cache / "checksums").glob("*"))}


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "overwritten"])
@pytest.mark.parametrize("kind", ["video shard", "text shard", "key.json", "tokens.bin", "feat.npy", "index.json",
                                  "checksum memo"])
def test_damaged_cache_file_gives_the_clean_metrics(clean, tmp_path, kind, damage):
    """Before the fix an overwritten tokens.bin gave other metrics with status complete, and a damaged
    feat.npy / index.json a traceback on every re-run."""
    cache = fresh_cache(clean, tmp_path, features=True)
    files = _cache_files(cache)[kind]
    assert files, kind
    for path in files:
        damage(path)
    record = run(make_cfg(cache), tmp_path / "run", progress=False)
    assert same_metrics(record, clean)
    assert record["counts"]["videos_decoded"] == (1 if kind == "video shard" else 0)  # the rest came from the cache
    if kind in ("tokens.bin", "feat.npy", "index.json"):  # rebuilt, never read
        for path in files:
            assert path.read_bytes() == (clean[0] / path.relative_to(cache)).read_bytes()


def _swap_in(video: Path, other: Path) -> None:
    st = video.stat()
    shutil.copyfile(other, video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` / `rsync -t` would leave it


def test_video_replaced_under_the_same_name_is_encoded_again(clean, tmp_path):
    """Before the fix the cache served the old video's features (keyed by folder and name only)."""
    cache = fresh_cache(clean, tmp_path, own_data=True)
    run(make_cfg(cache), tmp_path / "first", progress=False)
    videos = sorted((cache / "tiny_data").rglob("*.mp4"))
    _swap_in(videos[0], videos[1])
    stale = run(make_cfg(cache), tmp_path / "stale", progress=False)
    assert stale["counts"]["videos_decoded"] == 1 and stale["counts"]["videos_from_cache"] == len(videos) - 1
    fresh = fresh_cache(clean, tmp_path / "other", own_data=True)
    shutil.copyfile(videos[0], sorted((fresh / "tiny_data").rglob("*.mp4"))[0])
    reference = run(make_cfg(fresh), tmp_path / "reference", progress=False)
    assert stale["metrics"] == reference["metrics"] and stale["token_counts"] == reference["token_counts"]
    assert reference["counts"]["videos_from_cache"] == 0


def test_annotation_is_part_of_the_text_features_key(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path, own_data=True)
    first = run(make_cfg(cache), tmp_path / "a", progress=False)
    annotation = next((cache / "tiny_data").rglob("*.json"))
    annotation.write_text(annotation.read_text() + "\n")
    second = run(make_cfg(cache), tmp_path / "b", progress=False)
    assert first["checksums"]["annotation"]["sha256"] != second["checksums"]["annotation"]["sha256"]
    assert first["cache"]["text"]["key"] != second["cache"]["text"]["key"]
    # the texts are encoded again, the 7 clips' features still come from the cache
    assert (second["cache"]["text"]["hits"], second["cache"]["video"]["hits"]) == (0, 7)
    assert second["metrics"] == first["metrics"]  # same texts: same numbers, through a new text cache


# ------------------------------------------------------------------ kill -9 and SIGTERM at fixed points
#
# Each point patches one function of the run so that the signal arrives exactly there: while videos
# are decoded, once the video features are cached (before the texts), while ITM re-ranking reads
# tokens, while the token store is written (its files are down, its index is not), and while the
# complete record is written (its temporary file is down, the rename is not).

CHILD = """
import signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from _eval_helpers import make_cfg
from _fault_points import arm
from vidtldr.errors import cli_guard
from vidtldr.run.runner import run

arm(sys.argv[1], getattr(signal, sys.argv[2]))
with cli_guard("child"):
    run(make_cfg(Path(sys.argv[3]), "data.batch_size=2", "data.num_workers=0", *sys.argv[5:]), Path(sys.argv[4]),
        progress=False)
"""
# data.num_workers=0 in the child: the kill at the 4th decoded clip then comes after exactly one encoded batch
# (workers decode ahead of the encoder); the SIGTERM tests below run with the default workers.


def _child(tmp_path: Path, point: str, sig: str, cache: Path, run_dir: Path, *extra: str):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), point, sig, str(cache), str(run_dir), *extra], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_then_rerun_gives_the_clean_metrics(clean, tmp_path, point):
    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    # A finished run already in the directory: the killed run replaces it (eval.overwrite=true), so
    # it must have been moved aside, whole, before anything else was written.
    shutil.copytree(clean[0] / "runs" / "clean", run_dir)
    finished = (run_dir / "record.json").read_bytes()
    out = _child(tmp_path, point, "SIGKILL", cache, run_dir, "eval.overwrite=true")
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert [p.read_bytes() for p in run_dir.glob("record.replaced-*.json")] == [finished]
    assert read(run_dir)["status"] == "running"  # nothing can record a kill -9; the next run replaces it
    resumed = run(make_cfg(cache), run_dir, progress=False)
    assert same_metrics(resumed, clean)
    assert resumed["counts"]["videos_from_cache"] == {"decoding": 2}.get(point, 7)


@pytest.mark.parametrize("point", POINTS)
def test_sigterm_then_rerun_gives_the_clean_metrics(clean, tmp_path, point, monkeypatch):
    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    arm(point, signal.SIGTERM, monkeypatch.setattr)
    with pytest.raises(RunInterrupted):
        run(make_cfg(cache, "data.batch_size=2"), run_dir, progress=False)
    monkeypatch.undo()
    record = read(run_dir)
    assert record["status"] == "interrupted" and record["error"] == "interrupted by SIGTERM"
    assert not list((cache / "features").rglob("*.tmp"))  # atomic writes cleaned up after themselves
    resumed = run(make_cfg(cache), run_dir, progress=False)
    assert same_metrics(resumed, clean)


def test_sigterm_exits_143_with_one_line(clean, tmp_path):
    """The command-line side: the signal's exit status and one line, not a traceback."""
    cache = fresh_cache(clean, tmp_path)
    out = _child(tmp_path, "itm", "SIGTERM", cache, tmp_path / "run")
    assert out.returncode == 128 + signal.SIGTERM, out.stderr[-2000:]
    assert "child: interrupted by SIGTERM" in out.stderr and "Traceback" not in out.stderr
    assert read(tmp_path / "run")["status"] == "interrupted"


# ------------------------------------------------------------------ a disk that really fills up


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mount (root only), unmounted afterwards; yields a function that sets its size."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")

    def size(kib: int, remount: bool = False) -> Path:
        options = f"{'remount,' if remount else ''}size={kib}k"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        return mount

    yield size
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("kib, where", [(128, "shards"), (400, "store")])
def test_disk_that_fills_up(clean, tmp_path, small_disk, kib, where):
    """128 KiB fill up while the video shards are written, 400 KiB while the token store is."""
    cache = fresh_cache(clean, tmp_path)
    disk = small_disk(kib)
    features = disk / "features"
    run_dir = tmp_path / "run"
    with pytest.raises(DiskFullError) as failure:
        run(make_cfg(cache, f"cache.dir={features}"), run_dir, progress=False)
    assert str(features) in str(failure.value) and ("stores" in str(failure.value)) == (where == "store")
    record = read(run_dir)
    assert record["status"] == "failed" and "no space left on the device holding" in record["error"]
    leftovers = [p for p in disk.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []  # nothing half-written: no temporary files or folders
    small_disk(4096, remount=True)
    resumed = run(make_cfg(cache, f"cache.dir={features}"), run_dir, progress=False)
    assert same_metrics(resumed, clean)
    decoded = resumed["counts"]["videos_decoded"]
    assert decoded == 0 if where == "store" else 0 < decoded < 7  # the shards written before the disk filled stay


def test_two_identical_runs_at_once_on_one_cache(clean, tmp_path):
    """Both generate the tiny data, encode, pack the store and finish with the clean metrics."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "vidtldr.eval", f"paths.cache={cache}", "print_table=false",
                              f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    for name in ("a", "b"):
        assert same_metrics(read(tmp_path / name), clean)
    third = run(make_cfg(cache), tmp_path / "c", progress=False)
    assert same_metrics(third, clean) and third["counts"]["videos_decoded"] == 0
    assert len(list((cache / "features").glob("*/stores/*"))) == 1
