"""Built-in benchmark plugins (installed as ``harness.benchmarks``)."""
