"""Analysis tools on top of the models and the resolver, one sub-package per concern:

- :mod:`vidtldr.analysis.flops`: GFLOPs of a configuration (analytic count, fvcore cross-check) and
  ``results/flops.md``;
- :mod:`vidtldr.analysis.bench`: wall-clock and memory benchmarks (encoder, whole evaluation, scale);
- :mod:`vidtldr.analysis.search`: label-free agreement with the unreduced model (``fidelity``) and the
  budgeted schedule search (``tune``);
- :mod:`vidtldr.analysis.visualize`: merged groups and saliency drawn on frames.

Each sub-package's ``__init__`` names its public surface; the command-line entry modules are the
top-level ``vidtldr.<command>`` modules."""
