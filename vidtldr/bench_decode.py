"""Command `python -m vidtldr.bench_decode`; the implementation is :mod:`vidtldr.analysis.bench.decode`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.decode import main

    sys.exit(main())
