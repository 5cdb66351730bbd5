"""Command `python -m vidtldr.results`; the implementation is :mod:`vidtldr.report.results`."""

if __name__ == "__main__":
    import sys

    from vidtldr.report.results import main

    sys.exit(main())
