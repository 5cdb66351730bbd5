"""Command `python -m vidtldr.bench`; the implementation is :mod:`vidtldr.analysis.bench.command`."""

SUMMARY = "encoder wall-clock time and peak memory per reducer (random weights); results/bench.md"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.command import main

    sys.exit(main())
