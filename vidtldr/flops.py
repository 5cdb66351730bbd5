"""Command `python -m vidtldr.flops`; the implementation is :mod:`vidtldr.analysis.flops`."""

SUMMARY = "GFLOPs of one configuration (analytic; trace=true cross-checks with fvcore), or results/flops.md"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.flops.command import main

    sys.exit(main())
