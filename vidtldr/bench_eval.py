"""Command `python -m vidtldr.bench_eval`; the implementation is :mod:`vidtldr.analysis.bench.evaluation`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.evaluation import main

    sys.exit(main())
