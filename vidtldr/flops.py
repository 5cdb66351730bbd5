"""Command `python -m vidtldr.flops`; the implementation is :mod:`vidtldr.analysis.flops`."""

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.flops.command import main

    sys.exit(main())
