"""``python -m vidtldr <command> [overrides]``: the same as the ``vidtldr`` console command."""

if __name__ == "__main__":
    import sys

    from vidtldr.cli import main

    sys.exit(main())
