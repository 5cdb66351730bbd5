"""Command `python -m vidtldr.compare`; the implementation is :mod:`vidtldr.analysis.compare.command`."""

SUMMARY = "every registered reducer at one GFLOPs budget: accuracy, fidelity and time"

if __name__ == "__main__":
    from vidtldr.analysis.compare.command import main

    main()
