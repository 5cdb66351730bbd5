"""Command `python -m vidtldr.tune`; the implementation is :mod:`vidtldr.analysis.search.tune`."""

SUMMARY = "search per-block schedules under a GFLOPs budget by label-free fidelity"

if __name__ == "__main__":
    from vidtldr.analysis.search.tune import main

    main()
