"""Which training checkpoint a resumed run may trust.

transformers' ``Trainer._save_checkpoint`` (which TRL's trainers inherit)
writes a checkpoint folder in place, in this order: the model
(``save_model``: weights, config), ``optimizer.pt`` and ``scheduler.pt``,
``rng_state.pth``, and ``trainer_state.json`` last, with a plain
``open(..., "w")``; only then are older checkpoints rotated away. It writes
no completion marker, and ``get_last_checkpoint`` takes the highest-numbered
folder whatever it holds, so a process killed mid-save left a folder that every
later run tried, and failed, to resume from.

A checkpoint is complete here when its ``trainer_state.json`` parses and
names the folder's own step (written last, so everything before it is whole)
and the weights, optimizer and scheduler it needs are present. Incomplete
folders are moved aside, never deleted: ``.partial/checkpoint-N-<time>``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

#: any one of these holds the model's (or the adapter's) weights
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    "adapter_model.safetensors", "adapter_model.bin",
)
#: written by ``_save_optimizer_and_scheduler``: without them a resume silently restarts Adam and the schedule
REQUIRED_FILES = ("optimizer.pt", "scheduler.pt")
STATE_FILE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME
QUARANTINE = ".partial"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None when it is complete."""
    match = _CHECKPOINT.match(checkpoint.name)
    if match is None:
        return f"{checkpoint.name} is not named checkpoint-STEP"
    state = checkpoint / STATE_FILE
    if not state.is_file():
        return f"{STATE_FILE} is missing (the save was cut before its last file)"
    try:
        step = json.loads(state.read_text()).get("global_step")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return f"{STATE_FILE} is truncated or corrupt"
    if step != int(match.group(1)):
        return f"{STATE_FILE} records step {step}, not {match.group(1)}"
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        return "it holds no model weights"
    missing = [name for name in REQUIRED_FILES if not (checkpoint / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    return None


def latest_complete_checkpoint(folder: Path | None) -> Path | None:
    """The newest complete checkpoint in ``folder``; every incomplete one is quarantined with a warning.

    Older complete checkpoints stay: TRL's ``save_total_limit`` rotates them once
    the resumed run saves again.
    """
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    found = sorted(
        (p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
        key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True,
    )
    chosen = None
    for checkpoint in found:
        reason = incomplete_reason(checkpoint)
        if reason is None:
            chosen = chosen or checkpoint
            continue
        aside = quarantine(checkpoint)
        print(f"warning: {checkpoint} is incomplete ({reason}); moved it to {aside}", file=sys.stderr)
    if found and chosen is not None and chosen != found[0]:
        print(f"warning: resuming from the last complete checkpoint, {chosen.name}", file=sys.stderr)
    return chosen


def quarantine(checkpoint: Path) -> Path:
    """Move ``checkpoint`` to ``<folder>/.partial/<name>-<UTC time>`` (kept for inspection, out of TRL's way)."""
    aside_dir = checkpoint.parent / QUARANTINE
    aside_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = aside_dir / f"{checkpoint.name}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = aside_dir / f"{checkpoint.name}-{stamp}-{n}"
    checkpoint.rename(target)
    return target
