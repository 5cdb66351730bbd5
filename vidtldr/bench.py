"""Command `python -m vidtldr.bench`; the implementation is :mod:`vidtldr.analysis.bench.command`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench.command import main

    sys.exit(main())
