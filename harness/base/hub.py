"""Whether the Hugging Face hub can answer, decided in seconds instead of minutes of retries.

``huggingface_hub`` retries an unreachable host five times with back-off, and
transformers asks for several files in turn, so an unknown model id on a
machine without network used to wait about 50 s and end in a traceback after
a run had been stored as failed. A bounded socket probe answers the same
question first (the benchmark loader in ``harness/benchmarks/math_sets.py`` does the same).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from urllib.parse import urlparse

from harness.base.errors import UserError

#: seconds to wait for the hub's host (name lookup and TCP connect) before calling it unreachable
PROBE_TIMEOUT_S = 3.0
#: seconds for one metadata request once the host answered
REQUEST_TIMEOUT_S = 10.0


#: (monotonic time, outcome) of the last probe: a sweep plans many cells of one model in a row
_last_probe: tuple[float, str | None] | None = None
#: seconds a probe's outcome is reused
PROBE_REUSE_S = 60.0


def hub_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub's host cannot be reached within ``timeout`` seconds, or None when it answers.

    In a thread, because a name lookup (``getaddrinfo``) ignores socket timeouts.
    """
    global _last_probe
    if _last_probe is not None and time.monotonic() - _last_probe[0] < PROBE_REUSE_S:
        return _last_probe[1]
    reason = _probe(timeout)
    _last_probe = (time.monotonic(), reason)
    return reason


def _probe(timeout: float) -> str | None:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port} is unreachable ({exc})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome:
        return f"{host}:{port} did not answer within {timeout:.0f} s"
    return outcome[0]


def use_offline_mode() -> None:
    """Let huggingface_hub and transformers answer from the local cache alone (this process and its children)."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"


def check_hub_model(ref: str) -> None:
    """Make sure hub id ``ref`` will load, or raise a UserError that says what was tried.

    Tried in order: the local hub cache, ``HF_HUB_OFFLINE``, a probe of the hub's
    host, the model's metadata on the hub. A cached model on a machine that
    cannot reach the hub loads from the cache in offline mode.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(ref, "config.json"), str)
    where = f"the local hub cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        if cached:
            return
        raise UserError(f"model {ref!r} is not in {where} and HF_HUB_OFFLINE is set, so the hub was not asked; "
                        "unset HF_HUB_OFFLINE, or pass --model /path/to/a/local/model")
    reason = hub_unreachable()
    if reason is not None:
        if cached:
            print(f"warning: the hub cannot be reached ({reason}); loading {ref!r} from {where}", file=sys.stderr)
            use_offline_mode()
            return
        raise UserError(f"model {ref!r} could not be resolved: it is not in {where}, and the hub cannot be "
                        f"reached ({reason}, probe of {PROBE_TIMEOUT_S:.0f} s). Pass --model /path/to/a/local/model, "
                        "or run where the hub is reachable")
    _check_on_hub(ref, cached)


def _check_on_hub(ref: str, cached: bool) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
    )

    try:
        HfApi().model_info(ref, timeout=REQUEST_TIMEOUT_S)
    except GatedRepoError:
        if not cached:
            raise UserError(f"model {ref!r} is gated on the hub: accept its terms on the model page and log in "
                            "(`hf auth login`), or pass a local folder") from None
    except RepositoryNotFoundError:
        raise UserError(f"model {ref!r} does not exist on the hub (or is private: log in with `hf auth login`); "
                        "check the id, or pass --model /path/to/a/local/model") from None
    except (HfHubHTTPError, OSError) as exc:
        if not cached:
            raise UserError(f"model {ref!r}: the hub did not answer its metadata request "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
