"""Command `python -m vidtldr.compare`; the implementation is :mod:`vidtldr.analysis.compare`."""

if __name__ == "__main__":
    from vidtldr.analysis.compare import main

    main()
