"""Resident and GPU memory of a phase, and the time a phase spends inside the model's forward.

- **Peaks per phase.** CUDA peak statistics are reset at the start of each
  phase; on Linux the process's RSS high-water mark is reset too
  (``/proc/self/clear_refs``), elsewhere a sampling thread stands in.
- **Forward share.** Hooks on the model time every forward, so a profile can
  say how much of an evaluation was the model and how much the loop around it.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

# ---------------------------------------------------------------------------
# resident memory


_process_peak = 0  # RSS high-water mark from before the last per-phase reset


def _status_kib(*fields: str) -> dict[str, int]:
    """``/proc/self/status`` memory fields in KiB (empty off Linux)."""
    try:
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f) if k in fields}
    except OSError:
        return {}


def _hwm_bytes() -> int:
    """The RSS high-water mark since the last reset, in bytes.

    Linux reads ``VmHWM``, the address space's own mark, the one
    ``clear_refs`` resets; ``getrusage`` also folds in marks the kernel keeps
    elsewhere, which a reset does not touch.
    """
    hwm = _status_kib("VmHWM").get("VmHWM")
    if hwm is not None:
        return hwm * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (per-phase resets included)."""
    return max(_process_peak, _hwm_bytes())


_RESET_SLACK_KIB = 8 * 1024  # what may be allocated between the reset and the check


def _reset_hwm() -> bool:
    """Reset the RSS high-water mark; False where that did not take effect.

    The reset is checked, not assumed: a sandboxed kernel (gVisor) or a
    read-only /proc can accept the write and keep the old mark, and a phase
    would then report the whole process's peak as its own.
    """
    global _process_peak
    _process_peak = peak_rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    now = _status_kib("VmHWM", "VmRSS")
    return len(now) == 2 and now["VmHWM"] <= now["VmRSS"] + _RESET_SLACK_KIB


class _RssSampler(threading.Thread):
    """Fallback peak-RSS meter where the high-water mark cannot be reset: psutil every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self.halt.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


# ---------------------------------------------------------------------------
# one measured phase


@dataclass
class PhaseStats:
    """What one phase took: wall time, time inside the model's forward, peak memory."""

    wall_s: float = 0.0
    forward_s: float = 0.0
    forward_calls: int = 0
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None

    @property
    def forward_share(self) -> float | None:
        return self.forward_s / self.wall_s if self.wall_s > 0 else None


class watch:
    """``with watch(model, device) as w: ...; w.stats``: one phase's time, forward time and peaks.

    Forward time comes from a pre-hook and a hook on the top module, which
    ``generate`` calls once per step; on CUDA the hook synchronises so the
    time is the kernels', not their launch (generation waits for each token
    anyway, so this costs nothing extra).
    """

    def __init__(self, model=None, device: str = "cpu"):
        self.model = model
        self.cuda = device.startswith("cuda")
        self.device = device
        self.stats = PhaseStats()
        self._handles: list = []
        self._sampler: _RssSampler | None = None
        self._t: float = 0.0

    def __enter__(self) -> watch:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if not _reset_hwm():
            self._sampler = _RssSampler()
            self._sampler.start()
        if self.model is not None:
            # a PEFT wrapper's generate() calls the base model, so time that one
            target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            self._handles = [target.register_forward_pre_hook(self._pre), target.register_forward_hook(self._post)]
        self._start = time.perf_counter()
        return self

    def _pre(self, module, args) -> None:
        self._t = time.perf_counter()

    def _post(self, module, args, output) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
        self.stats.forward_s += time.perf_counter() - self._t
        self.stats.forward_calls += 1

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
        self.stats.wall_s = time.perf_counter() - self._start
        for h in self._handles:
            h.remove()
        self.stats.peak_rss_bytes = self._sampler.stop() if self._sampler else _hwm_bytes()
        if self.cuda:
            import torch

            self.stats.peak_gpu_bytes = int(torch.cuda.max_memory_allocated(self.device))
