"""Built-in quantization strategies (installed as ``harness.strategies``), one module each."""
