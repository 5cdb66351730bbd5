"""Command `python -m vidtldr.fidelity`; the implementation is :mod:`vidtldr.analysis.fidelity`."""

if __name__ == "__main__":
    from vidtldr.analysis.fidelity import main

    main()
