"""Command `python -m vidtldr.validate` (also `python -m vidtldr.data.validate`); the implementation
is :mod:`vidtldr.data.validate`."""

SUMMARY = "check a dataset on disk before a run: annotations, schema, videos, counts, checksums"

if __name__ == "__main__":
    import sys

    from vidtldr.data.validate import main

    sys.exit(main())
