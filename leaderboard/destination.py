"""Where ``harness leaderboard`` may write: never over files it did not write.

The published leaderboard lives in the repository (``leaderboard/published/``) and is
regenerated only on purpose (``--out leaderboard/published``). The default output is
``./leaderboard-out`` (git-ignored in this repository): a folder beside the user, easy to
open, that no checkout tracks. A folder is the generator's when it holds nothing but the
generator's file names and sub-folders that are themselves the generator's (``studies/``);
anything else (a code folder, a home directory, a web root) is refused unless forced.
"""

from __future__ import annotations

from pathlib import Path

from harness.base.errors import UserError

#: the default ``--out``, relative to the current directory
DEFAULT_OUT = "leaderboard-out"
#: the repository's published leaderboard (relative to a checkout's root)
PUBLISHED = "leaderboard/published"


def foreign_entries(folder: Path, written: tuple[str, ...]) -> list[str]:
    """Entries of ``folder`` (recursively, as relative paths) that the generator does not write."""
    if not folder.is_dir():
        return []
    foreign: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            foreign.extend(f"{entry.name}/{name}" for name in foreign_entries(entry, written))
        elif entry.name not in written:
            foreign.append(entry.name)
    return foreign


def check_destination(out_dir: Path | str, written: tuple[str, ...], force: bool = False) -> Path:
    """``out_dir`` as a Path, or a UserError when writing there could overwrite someone's files."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    foreign = [] if force else foreign_entries(out, written)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise UserError(
            f"--out {out} holds files the leaderboard generator did not write ({shown}); "
            f"choose a new or empty folder, or pass --force to write {', '.join(written)} there anyway"
        )
    return out
