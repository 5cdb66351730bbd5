"""Command `python -m vidtldr.bench_scale`; the implementation is :mod:`vidtldr.analysis.bench_scale`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench_scale import main

    sys.exit(main())
