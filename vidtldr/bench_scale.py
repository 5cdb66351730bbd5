"""Command `python -m vidtldr.bench_scale`; the implementation is :mod:`vidtldr.analysis.bench.scale`."""

SUMMARY = "peak memory of a tiny evaluation against the number of clips; results/bench_scale.md"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.scale import main

    sys.exit(main())
