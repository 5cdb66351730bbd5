"""Command `python -m vidtldr.visualize`; the implementation is :mod:`vidtldr.analysis.visualize.command`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.visualize.command import main

    sys.exit(main())
