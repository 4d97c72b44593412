"""TRL: the distillation trainer lives in ``trl.experimental`` (APIs there "may change or be removed
without notice"), so the ``kd`` trainer reaches it through this seam."""

from __future__ import annotations

import os

from harness.compat import Seam

SEAM = Seam(
    library="trl",
    written_against="1.16.0",
    supported=">=1.10,<2",
    what="trl.experimental.gkd (GKDTrainer, GKDConfig: the kd trainer's off-policy distillation)",
)


def gkd():
    """``(GKDTrainer, GKDConfig)``, after checking TRL's version; TRL's experimental-import warning
    is silenced, since this seam is where that instability is accounted for."""
    SEAM.require()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    return GKDTrainer, GKDConfig
