"""Command `python -m vidtldr.bench_eval`; the implementation is :mod:`vidtldr.analysis.bench_eval`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench_eval import main

    sys.exit(main())
