"""tqdm: every progress bar in the process is switched off by wrapping ``tqdm.std.tqdm.__init__``.

``TQDM_DISABLE`` alone is not enough: compressed-tensors passes ``disable=not show_progress``
explicitly ("Applying quantization config", "Dispatching model" in ``apply_quantization_config``
and ``dispatch_model``), which overrides the variable, and the harness draws its own progress
lines. The wrapper only sets tqdm's public ``disable`` argument, but replacing a library class's
constructor for the whole process is a patch of its internals all the same, so it lives here with
the versions it is known to hold for.
"""

from __future__ import annotations

import functools
import warnings

from harness.base.errors import UserError
from harness.compat import Seam

SEAM = Seam(
    library="tqdm",
    written_against="4.70.1",
    supported=">=4.60,<5",
    what="tqdm.std.tqdm.__init__ (wrapped so that every progress bar is disabled)",
)

#: set on the wrapper, so a second call sees the patch in place and leaves it
_MARK = "_harness_silenced"


class SeamSkipped(UserWarning):
    """A cosmetic patch was left out because the installed library is outside the seam's range."""


def silence_bars() -> bool:
    """Disable every tqdm bar from now on; whether the patch is in place. Idempotent.

    Not installed: nothing to silence (False). A version outside :data:`SEAM`'s range is
    not patched and one warning says so (False): a progress bar on the console is not worth
    refusing a run for, while a wrong patch of a constructor could break every bar's caller.
    """
    if SEAM.installed() is None:
        return False
    try:
        SEAM.require()
    except UserError as exc:
        warnings.warn(f"progress bars stay on: {exc}", SeamSkipped, stacklevel=2)
        return False
    from tqdm import std

    init = std.tqdm.__init__
    if getattr(init, _MARK, False):
        return True

    @functools.wraps(init)
    def silenced(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    setattr(silenced, _MARK, True)
    std.tqdm.__init__ = silenced  # type: ignore[method-assign]
    return True
