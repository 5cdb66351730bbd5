"""Command `python -m vidtldr.fidelity`; the implementation is :mod:`vidtldr.analysis.search.fidelity`."""

SUMMARY = "how close a reduced model stays to the unreduced one, without labels"

if __name__ == "__main__":
    from vidtldr.analysis.search.fidelity import main

    main()
