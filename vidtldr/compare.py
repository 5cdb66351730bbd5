"""Command `python -m vidtldr.compare`; the implementation is :mod:`vidtldr.analysis.compare.command`."""

if __name__ == "__main__":
    from vidtldr.analysis.compare.command import main

    main()
