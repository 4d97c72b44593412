"""Which profiles are worth keeping: the rule the evaluate and profile stages apply before the store writes one.

A profile that measured no throughput at all (every figure missing or 0) would show as 0 tok/s on the
leaderboard, a number nobody measured; it is left out with one warning, and the run's accuracy stays stored.
The store itself only persists (:meth:`~harness.runs.store.Store.set_profile`).
"""

from __future__ import annotations

import sys

from harness.runs.store import Store

#: profile figures named ``*tokens_per_s`` (evaluation, decode, serving): a kept profile has one above 0
THROUGHPUT_SUFFIX = "tokens_per_s"


def has_throughput(profile: dict) -> bool:
    """Whether ``profile`` measured any throughput (every engine's figures end in ``tokens_per_s``)."""
    return any(k.endswith(THROUGHPUT_SUFFIX) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
               for k, v in profile.items())


def keep_profile(store: Store, run_id: str, profile: dict) -> bool:
    """Store ``profile`` for ``run_id`` when it measured throughput; else warn (on stderr, naming the command that
    measures it again) and store nothing. Returns whether it was stored."""
    if not has_throughput(profile):
        print(f"warning: the profile of run {run_id} measured no throughput (no *{THROUGHPUT_SUFFIX} "
              "figure); it is not stored: run `harness profile` to measure it", file=sys.stderr)
        return False
    store.set_profile(run_id, profile)
    return True
