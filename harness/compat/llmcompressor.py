"""llmcompressor: AWQ pins activations to page-locked memory, which fails without an accelerator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from harness.compat import Seam

SEAM = Seam(
    library="llmcompressor",
    written_against="0.14.0.1",
    supported=">=0.14,<0.15",
    what="the CPU guard around llmcompressor.pipelines.cache.IntermediatesCache.pin_memory (AWQ)",
)


@contextmanager
def cpu_pin_memory_guard() -> Iterator[None]:
    """Skip ``llmcompressor.pipelines.cache.IntermediatesCache.pin_memory`` while no accelerator exists.

    llmcompressor 0.14's AWQ pins its cached activations before each grid search
    to speed host-to-device copies; without an accelerator ``Tensor.pin_memory``
    raises ``RuntimeError: Cannot access accelerator device when none is
    available``. Pinning changes no values, so skipping it is exact. Applied
    only for the duration of one quantization and restored afterwards; a no-op
    on a machine with a GPU.
    """
    import torch

    if torch.accelerator.is_available():
        yield
        return
    SEAM.require()
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original
