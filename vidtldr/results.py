"""Command `python -m vidtldr.results`; the implementation is :mod:`vidtldr.report.results`."""

SUMMARY = "rebuild the paper tables and plots in results/ from the run records"

if __name__ == "__main__":
    import sys

    from vidtldr.report.results import main

    sys.exit(main())
