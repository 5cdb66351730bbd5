"""Run orchestration: the one config resolver, the runner, feature cache and store, data parallelism, run records."""
