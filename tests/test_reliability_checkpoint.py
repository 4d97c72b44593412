"""A training run killed while TRL writes a checkpoint, and what killed builders leave in the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.base.checkpoints import (
    QUARANTINE,
    incomplete_reason,
    latest_complete_checkpoint,
)
from harness.runs.cache import DONE, ArtifactCache


def _checkpoint(folder: Path, step: int, upto: str = "state") -> Path:
    """A checkpoint folder as transformers' ``_save_checkpoint`` leaves it when stopped after ``upto``."""
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    order = ["model", "optimizer", "rng", "state"]
    done = order[: order.index(upto) + 1] if upto != "nothing" else []
    if "model" in done:
        (ckpt / "config.json").write_text("{}")
        (ckpt / "model.safetensors").write_bytes(b"weights")
    if "optimizer" in done:
        (ckpt / "optimizer.pt").write_bytes(b"adam")
        (ckpt / "scheduler.pt").write_bytes(b"lr")
    if "rng" in done:
        (ckpt / "rng_state.pth").write_bytes(b"rng")
    if "state" in done:
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def test_what_counts_as_complete(tmp_path):
    assert incomplete_reason(_checkpoint(tmp_path, 1)) is None
    assert "missing" in incomplete_reason(_checkpoint(tmp_path, 2, upto="rng"))
    assert "missing" in incomplete_reason(_checkpoint(tmp_path, 3, upto="model"))
    truncated = _checkpoint(tmp_path, 4)
    (truncated / "trainer_state.json").write_text('{"global_step": 4, "log_hist')
    assert "truncated" in incomplete_reason(truncated)
    wrong = _checkpoint(tmp_path, 5)
    (wrong / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    assert "step 3" in incomplete_reason(wrong)
    no_weights = _checkpoint(tmp_path, 6)
    (no_weights / "model.safetensors").unlink()
    assert "no model weights" in incomplete_reason(no_weights)


def test_partial_checkpoints_are_moved_aside_and_the_previous_complete_one_is_used(tmp_path, capsys):
    _checkpoint(tmp_path, 25)
    _checkpoint(tmp_path, 50, upto="optimizer")
    _checkpoint(tmp_path, 75, upto="nothing")
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-25"
    err = capsys.readouterr().err
    assert "checkpoint-50 is incomplete" in err and "checkpoint-75 is incomplete" in err
    assert "resuming from the last complete checkpoint, checkpoint-25" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [QUARANTINE, "checkpoint-25"]
    aside = sorted(p.name for p in (tmp_path / QUARANTINE).iterdir())
    assert [a.rsplit("-", 1)[0] for a in aside] == ["checkpoint-50", "checkpoint-75"]
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-25"  # nothing moves twice
    assert capsys.readouterr().err == ""
    assert latest_complete_checkpoint(tmp_path / "none") is None


# -- the artifact cache ---------------------------------------------------------------------------

_DEAD_BUILDER = """
import fcntl, os, sys, tempfile, time
from pathlib import Path
root, key, hold = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "hold"
(root / "locks" / "train").mkdir(parents=True, exist_ok=True)
(root / "artifacts" / "train").mkdir(parents=True, exist_ok=True)
handle = open(root / "locks" / "train" / f"{key}.lock", "a")
fcntl.flock(handle, fcntl.LOCK_EX)
tempfile.mkdtemp(prefix=f".{key}.", dir=root / "artifacts" / "train")
(root / "scratch" / "train" / key).mkdir(parents=True, exist_ok=True)
print("ready", flush=True)
if hold:
    time.sleep(120)
os._exit(9)  # killed while building: the temporary folder and scratch stay behind
"""


def _builder(root: Path, key: str, hold: bool) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _DEAD_BUILDER, str(root), key, "hold" if hold else "die"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_build_removes_what_dead_builders_left_and_spares_live_ones(tmp_path):
    cache = ArtifactCache(tmp_path)
    dead = _builder(tmp_path, "deadkey", hold=False)
    dead.wait(timeout=30)
    alive = _builder(tmp_path, "livekey", hold=True)
    try:
        artifacts = tmp_path / "artifacts" / "train"
        assert len(list(artifacts.glob(".deadkey.*"))) == 1 and len(list(artifacts.glob(".livekey.*"))) == 1

        def make(out: Path) -> dict:
            cache.scratch("train", "newkey")  # resumable state while it trains
            (out / "weights").write_text("w")
            return {"ok": True}

        path, record = cache.build("train", "newkey", make)
        assert record["ok"] and (path / DONE).exists()
        assert not list(artifacts.glob(".deadkey.*")), "a dead builder's temporary folder survived"
        assert len(list(artifacts.glob(".livekey.*"))) == 1, "a live builder's temporary folder was removed"
        assert not (tmp_path / "scratch" / "train" / "newkey").exists(), "scratch of a published artifact stayed"
        assert (tmp_path / "scratch" / "train" / "deadkey").exists()  # unpublished: resumable, kept
        assert (tmp_path / "scratch" / "train" / "livekey").exists()
    finally:
        alive.kill()
        alive.wait()


def test_a_killed_builder_of_the_same_key_leaves_nothing_after_the_rebuild(tmp_path):
    dead = _builder(tmp_path, "samekey", hold=False)
    dead.wait(timeout=30)
    (tmp_path / "artifacts" / "train" / "published").mkdir()
    (tmp_path / "artifacts" / "train" / "published" / DONE).write_text("{}")
    (tmp_path / "scratch" / "train" / "published").mkdir(parents=True)  # left by an older version
    ArtifactCache(tmp_path).build("train", "samekey", lambda out: {})
    assert sorted(p.name for p in (tmp_path / "artifacts" / "train").iterdir()) == ["published", "samekey"]
    assert not (tmp_path / "scratch" / "train" / "published").exists()


# -- a real interrupted save --------------------------------------------------------------------------

_TRAIN = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_grpo import SMALL, make_ctx
from harness.trainers.grpo import GRPO

tiny, tmp, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
if kill_at:
    from transformers.trainer_callback import TrainerState

    real = TrainerState.save_to_json

    def save_then_die(self, path):
        if self.global_step == kill_at:  # TRL's writer, killed halfway through its last file
            text = json.dumps(self.__dict__, default=str)
            with open(path, "w") as f:
                f.write(text[: len(text) // 2])
            os._exit(9)
        real(self, path)

    TrainerState.save_to_json = save_then_die
ctx, _ = make_ctx(tiny, tmp, GRPO(), SMALL)
report = ctx.train(GRPO())
print(json.dumps({{"steps": report.steps, "resumed_from": report.extra["resumed_from"]}}))
"""


@pytest.mark.slow
def test_a_grpo_run_killed_while_trl_writes_a_checkpoint_resumes_from_the_previous_one(tiny_dir, tmp_path):
    script = _TRAIN.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", script, str(tiny_dir), str(tmp_path), "2"],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert killed.returncode == 9, killed.stderr[-2000:]
    checkpoints = tmp_path / "checkpoints"
    partial = checkpoints / "checkpoint-2"
    assert (partial / "model.safetensors").exists() and (partial / "optimizer.pt").exists()
    assert "truncated" in incomplete_reason(partial)

    resumed = subprocess.run([sys.executable, "-c", script, str(tiny_dir), str(tmp_path), "0"],
                             capture_output=True, text=True, env=env, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report == {"steps": 2, "resumed_from": "checkpoint-1"}
    assert "checkpoint-2 is incomplete" in resumed.stderr
    assert [p.name.rsplit("-", 1)[0] for p in (checkpoints / QUARANTINE).iterdir()] == ["checkpoint-2"]
    assert incomplete_reason(checkpoints / "checkpoint-2") is None
