"""Command `python -m vidtldr.visualize`; the implementation is :mod:`vidtldr.analysis.visualize`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.visualize import main

    sys.exit(main())
