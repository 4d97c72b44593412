"""quant-rl-harness: how should a reasoning LLM fine-tuned with RL be quantized?

Heavy libraries (torch, transformers, trl, llmcompressor) are imported inside the
stages that need them, so importing this package, ``harness --help`` and
``harness plugins`` stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("quant-rl-harness")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: Decorator for plugin hook implementations: ``@harness.hookimpl``.
hookimpl = pluggy.HookimplMarker("harness")

__all__ = ["__version__", "hookimpl"]
