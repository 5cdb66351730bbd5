"""Analysis tools on top of the models and the resolver: FLOPs counting, benchmarks, visualisation."""
