"""Fixed points of a tiny retrieval run where the fault tests deliver a signal (used in-process by
tests/test_faults.py and from the child processes it starts for kill -9)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

POINTS = ["decoding", "after_cache", "itm", "store_write", "record_write"]


def arm(point: str, signum: int, setattr_: Callable = setattr) -> None:
    """Patch the run so that ``signum`` reaches this process at ``point``: while videos are decoded
    (the 4th clip, 2 per batch), once the video features are cached (before the texts), while ITM
    re-ranking reads tokens (3rd read), while the token store is written (its files are down, its
    index is not), and while the complete record is written (half its temporary file is down)."""
    import vidtldr.data.dataset as dataset
    import vidtldr.run.feature_store as store
    import vidtldr.run.record as record
    import vidtldr.run.runner_retrieval as retrieval

    calls: list[int] = []
    # The run's main process: a decode point runs in a DataLoader worker (data.num_workers=auto), and the
    # signal must reach the run as a scheduler's or Ctrl-C's would (workers ignore stop signals).
    main_pid = os.getpid()

    def wrap(owner, name: str, nth: int, when=lambda *a, **k: True, before=None) -> None:
        real = getattr(owner, name)

        def patched(*args, **kwargs):
            if when(*args, **kwargs):
                if before is not None:
                    before(*args, **kwargs)
                calls.append(1)
                if len(calls) == nth:
                    os.kill(main_pid, signum)
            return real(*args, **kwargs)

        setattr_(owner, name, patched)

    def half_written(path, text):
        (Path(path).parent / f".{Path(path).name}.killed.tmp").write_text(text[: len(text) // 2])

    targets = {"decoding": (dataset.VideoDataset, "__getitem__", 4, {}),
               "after_cache": (retrieval, "text_features", 1, {}),
               "itm": (store.TokenStore, "tokens", 3, {}),
               "store_write": (store, "file_sha256", 1, {}),
               "record_write": (record, "atomic_write_text", 1,
                                {"when": lambda path, text: '"status": "complete"' in text, "before": half_written})}
    owner, name, nth, options = targets[point]
    wrap(owner, name, nth, **options)
