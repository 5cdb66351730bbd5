"""Command `python -m vidtldr.visualize`; the implementation is :mod:`vidtldr.analysis.visualize.command`."""

SUMMARY = "draw merged token groups and vid-TLDR saliency on a video's frames"

if __name__ == "__main__":
    import sys

    from vidtldr.analysis.visualize.command import main

    sys.exit(main())
