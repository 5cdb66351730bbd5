"""Command `python -m vidtldr.inspect` (also `python -m vidtldr.data.inspect`); the implementation is
:mod:`vidtldr.data.inspect`. (A submodule of the package: it never shadows the standard library's
``inspect``, which is imported as a top-level name.)"""

SUMMARY = "show which frames (and test views) the harness samples from one video"

if __name__ == "__main__":
    import sys

    from vidtldr.data.inspect import main

    sys.exit(main())
