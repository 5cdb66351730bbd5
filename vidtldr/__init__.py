"""vidtldr: evaluation harness for training-free token reduction on UMT video transformers."""

__version__ = "0.1.0"
