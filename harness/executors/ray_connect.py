"""Connecting to Ray: the import, ``ray.init`` on a cluster or a local instance, and the one-line refusals.

The executor (what it checks before a sweep) and its driver (what runs the
sweep) both connect, so the connection lives here, below both of them.
"""

from __future__ import annotations

from harness.base.errors import MissingDependencyError, UserError
from harness.base.threads import for_children

INSTALL_HINT = "pip install -e '.[ray]' (or pip install 'quant-rl-harness[ray]')"


def require_ray():
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(ray, address: str | None) -> None:
    """``ray.init`` on the cluster at ``address``, or on a local instance of this machine's CPUs and GPUs."""
    for_children()  # workers of a local instance inherit it (a cluster's nodes choose their own)
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address else "on this machine"
        if _needs_token(exc):
            raise UserError(
                f"the Ray cluster {where} asks for its authentication token (`ray start --head` turns token "
                "authentication on since Ray 2.5x, and Ray sends a token to an explicit address only when told): "
                "set RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN or "
                "RAY_AUTH_TOKEN_PATH; or use address=auto on the head node") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot connect to a Ray cluster {where}: {first}") from None


def _needs_token(exc: BaseException | None) -> bool:
    """Whether Ray refused the connection for a missing or wrong token. Ray 2.60 gives its
    ``AuthenticationError`` only as text: the traceback inside a RuntimeError that a ConnectionError wraps."""
    while exc is not None:
        if "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
