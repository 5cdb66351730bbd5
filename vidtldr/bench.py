"""Command `python -m vidtldr.bench`; the implementation is :mod:`vidtldr.analysis.bench`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.bench import main

    sys.exit(main())
