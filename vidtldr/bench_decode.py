"""Command `python -m vidtldr.bench_decode`; the implementation is :mod:`vidtldr.analysis.bench.decode`."""

SUMMARY = "decode ms per video per decoder and worker count, frame cache cold/warm; results/bench_decode.md"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.decode import main

    sys.exit(main())
