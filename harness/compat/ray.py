"""Ray: what ``--executor-opt address=auto`` stands for, looked up the way Ray itself does (a private helper)."""

from __future__ import annotations

from harness.base.errors import UserError
from harness.compat import Seam

SEAM = Seam(
    library="ray",
    written_against="2.60.0",
    supported=">=2.50,<3",
    what="ray._private.services.canonicalize_bootstrap_address (resolving the ray executor's address=auto)",
)


def auto_address() -> str | None:
    """The address ``auto`` resolves to (None: leave it to ``ray.init``, which reports the same later).

    Resolving it before ``ray.init`` lets the executor probe the address with a
    short timeout and fail in one line, instead of Ray's own long retry loop.
    """
    SEAM.require()
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"ray executor address=auto: {first}") from None
