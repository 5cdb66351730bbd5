"""Command `python -m vidtldr.fidelity`; the implementation is :mod:`vidtldr.analysis.search.fidelity`."""

if __name__ == "__main__":
    from vidtldr.analysis.search.fidelity import main

    main()
