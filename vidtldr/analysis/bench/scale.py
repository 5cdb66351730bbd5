"""Peak memory of a whole evaluation against the number of videos (``make bench-scale``).

Builds MSRVTT-format datasets of N clips by repeating the seven generated tiny clips under distinct
file names (symbolic links, so N videos cost no disk and each one is its own cache entry and its own
row of the score matrices), runs the tiny-model retrieval evaluation on each in a fresh subprocess,
and reads the subprocess's peak resident set size from ``wait4``. Per size it records:

* ``cold``: the first run, which encodes every clip (features go to the cache shards);
* ``disk``: a re-run from the cache with ITM reading tokens from the memory-mapped feature store
  (the default, ``eval.token_store=disk``);
* ``memory``: the same re-run with every video's tokens in one in-memory tensor
  (``eval.token_store=memory``), for contrast.

The tiny model's tokens are small (124 x 64 floats per clip), so the in-memory growth is modest
here; with UMT-B/L it is 2-6 MB per video. What the store removes is the term linear in videos x
tokens; what remains linear (texts' features, the N_v x N_t score matrices) is listed in the report.
Writes ``<out>/bench_scale.md`` and ``<out>/bench_scale.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence


from vidtldr import jsonio
from vidtldr.errors import cli_guard
from vidtldr.files import atomic_write_text
from vidtldr.provenance import machine

MODES = ("cold", "disk", "memory")


def make_scaled_dataset(tiny_root: Path, dest: Path, n_clips: int) -> Path:
    """``dest`` as an MSRVTT-format data root with ``n_clips`` records, record i pointing at
    ``clip_<i>.mp4`` -> tiny clip ``i % 7`` and carrying that clip's caption plus its number (so
    texts differ and each video has exactly one ground-truth text)."""
    records = json.loads((tiny_root / "anno_downstream" / "msrvtt_ret_test1k.json").read_text())
    videos = dest / "videos" / "msrvtt"
    videos.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n_clips):
        src = records[i % len(records)]
        name = f"clip_{i:05d}.mp4"
        link = videos / name
        if not link.is_symlink():
            link.symlink_to((tiny_root / "videos" / "msrvtt" / src["video"]).resolve())
        out.append({"video": name, "caption": f"{src['caption']} number {i}"})
    (dest / "anno_downstream").mkdir(parents=True, exist_ok=True)
    (dest / "anno_downstream" / "msrvtt_ret_test1k.json").write_text(jsonio.dumps(out))
    return dest


def run_measured(cmd: Sequence[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run ``cmd``; its peak RSS (MiB, from the kernel's accounting of the reaped child) and time."""
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return {"rc": proc.returncode, "peak_rss_mib": round(usage.ru_maxrss * scale, 1),
            "wall_s": round(time.perf_counter() - start, 2)}


def bench(sizes: Sequence[int], out: Path, work: Path, k_test: int = 4, batch_size: int = 8,
          timeout: float = 1800, modes: Sequence[str] = MODES) -> dict:
    from vidtldr.run.runner import ensure_tiny_data

    work.mkdir(parents=True, exist_ok=True)
    tiny = ensure_tiny_data(work / "cache", "msrvtt")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    for n in sizes:
        data = make_scaled_dataset(tiny, work / f"data_{n}", n)
        for mode in modes:
            store = "memory" if mode == "memory" else "disk"
            run_dir = work / "runs" / f"{n}_{mode}"
            cmd = [sys.executable, "-m", "vidtldr.eval", f"paths.data={data}", "data.source=real",
                   f"paths.cache={work / 'cache'}", f"hydra.run.dir={run_dir}", "print_table=false",
                   f"eval.k_test={k_test}", f"data.batch_size={batch_size}", "eval.flops=false",
                   f"eval.token_store={store}"]
            measured = run_measured(cmd, env, work / f"log_{n}_{mode}.txt", timeout)
            record = json.loads((run_dir / "record.json").read_text()) if (run_dir / "record.json").is_file() else {}
            counts = record.get("counts", {})
            rows.append({"clips": n, "mode": mode, **measured, "status": record.get("status"),
                         "videos": counts.get("videos"), "texts": counts.get("texts"),
                         "videos_decoded": counts.get("videos_decoded"),
                         "store_bytes": (record.get("feature_store") or {}).get("bytes"),
                         "r_mean": record.get("metrics", {}).get("itm", {}).get("r_mean")})
            print(f"{n:>6} clips  {mode:<6}  peak RSS {measured['peak_rss_mib']:>8.1f} MiB  "
                  f"{measured['wall_s']:>7.1f} s  rc={measured['rc']}", flush=True)
    result = {"sizes": list(sizes), "k_test": k_test, "batch_size": batch_size, "rows": rows,
              "ratios": _ratios(rows, sizes), "machine": machine()}
    atomic_write_text(out / "bench_scale.json", jsonio.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "bench_scale.md", markdown(result))
    return result


def _ratios(rows: list[dict], sizes: Sequence[int]) -> dict:
    """Peak RSS at the largest size over the smallest, per mode."""
    if len(sizes) < 2:
        return {}
    lo, hi = min(sizes), max(sizes)
    peak = {(r["clips"], r["mode"]): r["peak_rss_mib"] for r in rows}
    return {mode: round(peak[(hi, mode)] / peak[(lo, mode)], 3) for mode in {r["mode"] for r in rows}
            if peak.get((lo, mode)) and peak.get((hi, mode))}


def markdown(result: dict) -> str:
    sizes, m = result["sizes"], result["machine"]  # older results name the core count "cpus"
    lines = ["# Peak memory vs number of videos (tiny model, retrieval with ITM re-ranking)", "",
             f"`vidtldr bench_scale sizes=[{','.join(map(str, sizes))}]`; k_test={result['k_test']}, "
             f"batch {result['batch_size']}; one fresh process per row; peak RSS of that process (wait4 ru_maxrss). "
             f"Machine: {m['platform']}, {m.get('cpu_count', m.get('cpus'))} CPUs, torch {m['torch']}.", "",
             "| clips | run | peak RSS (MiB) | wall (s) | videos decoded | token store (bytes) | status |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['clips']} | {r['mode']} | {r['peak_rss_mib']} | {r['wall_s']} | {r['videos_decoded']} | "
                     f"{r['store_bytes'] if r['store_bytes'] is not None else '-'} | {r['status']} |")
    if result["ratios"]:
        lines += ["", f"Peak RSS ratio {max(sizes)} / {min(sizes)} clips: " +
                  ", ".join(f"{mode} {ratio}" for mode, ratio in sorted(result["ratios"].items()))]
    lines += ["", "`cold` encodes every clip (tokens go to the cache shards, not kept in memory) and re-ranks from "
              "the disk store; `disk` re-runs from the cache with the store; `memory` re-runs with all tokens in "
              "one tensor (`eval.token_store=memory`). Still linear in the number of videos/texts with the "
              "store: the texts' features and the N_v x N_t score matrices (4 bytes per entry, 4 such matrices).",
              ""]
    return "\n".join(lines)


# The flags this command took before it used the override grammar of every other command.
OLD_FLAGS = {"--sizes": "sizes=[N,...]", "--modes": "modes=[cold,disk,memory]", "--out": "out=DIR",
             "--work": "work=DIR", "--k-test": "eval.k_test=N", "--batch-size": "data.batch_size=N",
             "--timeout": "timeout=SECONDS"}


def options(argv: Sequence[str]) -> dict:
    """``configs/bench_scale.yaml`` with the overrides, every value checked (before any evaluation)."""
    from vidtldr.config_utils import compose_config, plain
    from vidtldr.config_values import choice, integer, number
    from vidtldr.errors import ConfigError

    for arg in argv:
        flag = arg.partition("=")[0]
        if flag in OLD_FLAGS:
            raise ConfigError(f"{flag} was replaced by the override grammar of every command: use {OLD_FLAGS[flag]}")
    cfg = compose_config(argv, config_name="bench_scale")
    sizes, modes = plain(cfg.sizes), plain(cfg.modes)
    sizes, modes = (sizes if isinstance(sizes, list) else [sizes]), (modes if isinstance(modes, list) else [modes])
    return {"sizes": [integer("sizes", s, low=1) for s in sizes], "modes": [choice("modes", m, MODES) for m in modes],
            "out": Path(str(cfg.out)), "work": Path(str(cfg.work)), "timeout": number("timeout", cfg.timeout, low=0,
                                                                                       low_open=True),
            "k_test": integer("eval.k_test", cfg.eval.k_test, low=1),
            "batch_size": integer("data.batch_size", cfg.data.batch_size, low=1)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    with cli_guard("vidtldr.bench_scale"):
        opts = options(argv)
        result = bench(opts["sizes"], opts["out"], opts["work"], k_test=opts["k_test"], batch_size=opts["batch_size"],
                       timeout=opts["timeout"], modes=opts["modes"])
        print(f"wrote {opts['out'] / 'bench_scale.md'} and bench_scale.json; ratios {result['ratios']}")
        return 0 if all(r["rc"] == 0 for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
