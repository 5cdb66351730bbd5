"""Command `python -m vidtldr.bench_eval`; the implementation is :mod:`vidtldr.analysis.bench.evaluation`."""

SUMMARY = "one whole evaluation per ITM engine, timed by stage; results/bench_eval.md"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.evaluation import main

    sys.exit(main())
