"""Command `python -m vidtldr.tune`; the implementation is :mod:`vidtldr.analysis.search.tune`."""

if __name__ == "__main__":
    from vidtldr.analysis.search.tune import main

    main()
