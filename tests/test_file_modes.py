"""Files and folders the project writes take their permissions from the process umask, as a plain
``open()`` / ``mkdir()`` would: a results or cache folder shared by a group (umask 002) stays
readable and writable by the group, the usual umask 022 gives 0644 files, and umask 077 keeps
everything private. (The atomic-write helper once created every file 0600 whatever the umask.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from vidtldr.files import atomic_output, atomic_write_text, temp_dir_beside
from vidtldr.report import results
from vidtldr.run.cache import FeatureCache
from vidtldr.run.record import write_record

# umask -> (file mode, folder mode), worked out by hand: 0666 / 0777 with the umask's bits cleared.
MODES = {0o002: (0o664, 0o775), 0o022: (0o644, 0o755), 0o077: (0o600, 0o700)}


@pytest.fixture(params=sorted(MODES), ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_record_json(tmp_path, umask):
    file_mode, _ = MODES[umask]
    write_record(tmp_path / "run", {"status": "complete"})
    assert mode(tmp_path / "run" / "record.json") == file_mode
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["record.json"]  # no temporary file left


def test_results_tables(tmp_path, umask):
    file_mode, _ = MODES[umask]
    (tmp_path / "runs").mkdir()
    written = results.build_all([tmp_path / "runs"], tmp_path / "out", tables=["qa"])
    files = [p for kinds in written.values() for p in kinds.values()]
    assert files and {mode(p) for p in files} == {file_mode}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_cache_shards_and_their_folder(tmp_path, umask):
    file_mode, dir_mode = MODES[umask]
    clip = tmp_path / "v.mp4"
    clip.write_bytes(b"not really a video")
    cache = FeatureCache(tmp_path / "cache", {"model": "tiny"})
    cache.bind_sources({"v.mp4": str(clip)})
    cache.save("v.mp4", {"feat": torch.zeros(2)})
    shards = [p for p in cache.dir.iterdir() if p.name != "key.json"]
    assert len(shards) == 1 and mode(shards[0]) == file_mode
    assert mode(cache.dir / "key.json") == file_mode
    assert mode(cache.dir) == dir_mode


def test_folders_built_aside_then_renamed(tmp_path, umask):
    """The feature store and the generated tiny data are filled in a temporary folder that is then
    renamed into place: that folder must not be 0700 (as tempfile.mkdtemp makes it)."""
    _, dir_mode = MODES[umask]
    tmp = temp_dir_beside(tmp_path / "store")
    assert tmp.parent == tmp_path and tmp.name.startswith(".store-")
    assert mode(tmp) == dir_mode


def test_writers_that_need_a_file_name(tmp_path, umask):
    file_mode, _ = MODES[umask]
    with atomic_output(tmp_path / "sheet.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # the writer may pick its format by suffix
        tmp.write_bytes(b"png")
    assert (tmp_path / "sheet.png").read_bytes() == b"png" and mode(tmp_path / "sheet.png") == file_mode


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("encoder crashed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]
