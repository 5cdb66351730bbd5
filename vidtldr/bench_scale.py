"""Command `python -m vidtldr.bench_scale`; the implementation is :mod:`vidtldr.analysis.bench.scale`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.scale import main

    sys.exit(main())
