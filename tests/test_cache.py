"""The artifact cache: whole artifacts only, and one build when two processes want the same one."""

from __future__ import annotations

import threading
import time

import pytest

from harness.runs.cache import ArtifactCache


def test_two_builders_of_one_artifact_build_it_once(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls: list[int] = []
    results: list[tuple] = []

    def make(out):
        calls.append(1)
        time.sleep(0.3)  # long enough for the other builder to arrive while this one holds the lock
        (out / "weights.bin").write_bytes(b"x")
        return {"made_by": threading.current_thread().name}

    threads = [threading.Thread(target=lambda: results.append(cache.build("quantize", "k1", make)), name=f"t{i}")
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 2 and results[0] == results[1]
    assert (results[0][0] / "weights.bin").read_bytes() == b"x"


def test_a_failed_build_leaves_nothing_and_the_next_one_builds(tmp_path):
    cache = ArtifactCache(tmp_path)

    def broken(out):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("crashed half-way")

    with pytest.raises(RuntimeError):
        cache.build("train", "k2", broken)
    assert cache.get("train", "k2") is None
    assert [p.name for p in cache.path("train", "k2").parent.iterdir()] == []
    path, record = cache.build("train", "k2", lambda out: {"ok": True})
    assert record["ok"] and cache.get("train", "k2") == (path, record)
