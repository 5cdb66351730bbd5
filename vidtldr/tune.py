"""Command `python -m vidtldr.tune`; the implementation is :mod:`vidtldr.analysis.tune`."""

if __name__ == "__main__":
    from vidtldr.analysis.tune import main

    main()
