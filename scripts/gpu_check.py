"""The GPU check: what the harness does on an NVIDIA GPU, in one command and one table.

Written for the GPU check machines (shared/STACK.md): torch 2.11 with CUDA 13, transformers 5.17,
accelerate, peft and pytest, no package registry, 10 minutes a command. What the harness needs beyond
that image travels with the checkout as wheels in ``gpu_wheels/`` (:data:`WHEELS`, 64 MiB at most in
all; bitsandbytes and pyarrow are slimmed to what a CUDA 13 Linux machine loads). The check

1. installs those wheels (``pip install --no-index --no-deps``) and the checkout (``pip install --no-deps -e .``);
2. runs, each as its own ``harness run ... --json`` on the embedded tiny-arith model, on ``cuda``:
   an evaluation (accuracy, peak GPU memory from ``torch.cuda.max_memory_allocated``, time to first
   token and ms per token), bitsandbytes 4-bit and 8-bit, GPTQ W4A16 and FP8 (W8A8, dynamic) through
   llmcompressor, and one GRPO step (bf16 on CUDA);
3. prints one summary table (and ``--json`` writes it), within an 8-minute budget: a step that would
   start after it is listed as skipped.

Without CUDA it says so in one line and exits 2. ``--dry-run`` is the CPU rehearsal: the wheel list is
resolved against ``gpu_wheels/``, pip's local wheel folders and cache, and the installed distributions
(with sizes; nothing is installed), and the steps run on ``cpu`` at tiny scale (``--only`` picks some).

Fetching the wheels (on a machine with network, the GPU image's Python version)::

    python scripts/gpu_check.py --fetch-wheels --python-version 3.12   # pip download + slimming
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
WHEEL_DIR = CHECKOUT / "gpu_wheels"
BUDGET_S = 8 * 60
MAX_WHEEL_BYTES = 64 * 2**20
# The GPU image's torch 2.11 CUDA 13 wheel is tagged manylinux_2_28, so its glibc is at least 2.28: a wheel
# tagged at or below that installs there.
GPU_IMAGE_GLIBC_MINOR = 28
EXIT_USAGE = 2


@dataclass(frozen=True)
class Wheel:
    """One distribution the GPU image lacks: the version the harness's stack resolves with, why it is needed,
    and the members dropped from its wheel to fit the budget (nothing a CUDA 13 Linux machine loads)."""

    dist: str
    version: str
    why: str
    drop: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The wheel file name's first part: ``compressed_tensors-0.19.0``."""
        return f"{self.dist.replace('-', '_')}-{self.version}"


#: what travels with the checkout (sizes: `--dry-run` reports them; about 59 MiB in all on CPython 3.11 and 3.12)
WHEELS: tuple[Wheel, ...] = (
    Wheel("trl", "1.16.0", "GRPO"),
    Wheel("bitsandbytes", "0.50.2", "bnb 4-bit and 8-bit",
          drop=("bitsandbytes/libbitsandbytes_cuda1[12]*.so", "bitsandbytes/libbitsandbytes_rocm*.so",
                "bitsandbytes/libbitsandbytes_xpu*.so")),
    Wheel("llmcompressor", "0.14.0.1", "GPTQ and FP8"),
    Wheel("compressed-tensors", "0.19.0", "the checkpoints llmcompressor writes"),
    Wheel("loguru", "0.7.3", "llmcompressor's logging"),
    Wheel("nvidia-ml-py", "13.615.71", "llmcompressor's GPU queries (pynvml)"),
    Wheel("pydantic", "2.14.4", "compressed-tensors' schemes"),
    Wheel("pydantic-core", "2.50.5", "pydantic"),
    Wheel("annotated-types", "0.8.0", "pydantic"),
    Wheel("typing-inspection", "0.4.5", "pydantic"),
    Wheel("datasets", "5.2.0", "calibration sets and TRL's inputs"),
    Wheel("pyarrow", "26.0.1", "datasets",
          drop=("pyarrow/libarrow_flight.so*", "pyarrow/libarrow_python_flight.so*", "pyarrow/_flight.*",
                "pyarrow/libarrow_s3.so*", "pyarrow/_s3fs.*", "pyarrow/_azurefs.*", "pyarrow/_gcsfs.*",
                "pyarrow/_hdfs.*", "pyarrow/_pyarrow_cpp_tests.*", "pyarrow/include/*", "pyarrow/tests/*",
                "pyarrow/src/*")),
    Wheel("pandas", "3.1.1", "datasets and TRL"),
    Wheel("python-dateutil", "2.9.0.post0", "pandas"),
    Wheel("six", "1.17.0", "python-dateutil (pandas fails to import without it)"),
    Wheel("requests", "2.34.2", "llmcompressor imports it; the image's hub client uses httpx"),
    Wheel("urllib3", "2.8.0", "requests"),
    Wheel("charset-normalizer", "3.5.3", "requests"),
    Wheel("dill", "0.4.1", "datasets"),
    Wheel("multiprocess", "0.70.19", "datasets"),
    Wheel("xxhash", "4.1.0", "datasets"),
    Wheel("math-verify", "0.9.0", "grading"),
    Wheel("latex2sympy2_extended", "1.11.0", "math-verify"),
    Wheel("antlr4-python3-runtime", "4.13.2", "latex2sympy2_extended"),
    Wheel("pluggy", "1.7.0", "the harness's plugins"),
    Wheel("rich", "15.0.0", "the harness's console"),
    Wheel("markdown-it-py", "4.3.0", "rich"),
    Wheel("mdurl", "0.1.2", "markdown-it-py"),
)


@dataclass
class Step:
    """One ``harness run`` of the check: its arguments, and whether it needs the GPU (a CPU rehearsal runs
    the rest; bitsandbytes and llmcompressor run on CPU too, at tiny scale)."""

    name: str
    what: str
    args: list[str]
    result: dict = field(default_factory=dict)


def steps(limit: int) -> list[Step]:
    common = ["--limit", str(limit)]
    return [
        Step("eval", "evaluation, bf16 on CUDA (fp32 on CPU)", ["--strategy", "none", *common]),
        Step("bnb4", "bitsandbytes NF4", ["--strategy", "bnb", "--bits", "4", *common]),
        Step("bnb8", "bitsandbytes LLM.int8", ["--strategy", "bnb", "--bits", "8", *common]),
        Step("gptq", "llmcompressor GPTQ W4A16", ["--strategy", "gptq", "--bits", "4", *common]),
        Step("fp8", "llmcompressor FP8_DYNAMIC W8A8", ["--strategy", "fp8", "--act-bits", "8", *common]),
        Step("grpo", "one GRPO step (bf16 on CUDA), then evaluation",
             ["--trainer", "grpo", "--max-steps", "1", "--strategy", "none", *common]),
    ]


# -- wheels -----------------------------------------------------------------------------------------


def local_wheel_dirs() -> list[Path]:
    """Folders pip reads wheels from without a network: its find-links and ``file://`` indexes, and its cache."""
    out = [WHEEL_DIR]
    try:
        config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        config = ""
    for line in config.splitlines():
        if "find-links" in line or "index-url" in line:
            for value in line.split("=", 1)[1].strip().strip("'\"").split():
                path = Path(value.removeprefix("file://"))
                out += [path, path.parent / "files"] if path.name == "simple" else [path]
    out.append(Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip")))
    return [p for p in dict.fromkeys(out) if p.is_dir()]


def find_wheel(wheel: Wheel, folders: list[Path]) -> Path | None:
    """A wheel file of ``wheel``'s distribution and version in ``folders`` (pip's cache is searched deep)."""
    for folder in folders:
        pattern = f"{wheel.stem}-*.whl"
        found = sorted(folder.glob(pattern)) or sorted(folder.glob(f"**/{pattern}")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def slimmed_size(path: Path, drop: tuple[str, ...]) -> int:
    """The compressed bytes of ``path``'s members left after ``drop``: what the slimmed wheel will weigh."""
    with zipfile.ZipFile(path) as z:
        kept = [i for i in z.infolist() if not any(fnmatch.fnmatch(i.filename, p) for p in drop)]
        return sum(i.compress_size for i in kept) + 22 + sum(46 + len(i.filename) for i in kept) * 2


def resolve_wheels(folders: list[Path] | None = None) -> list[dict]:
    """Each listed wheel: where it was found (a wheel file, or only an installed distribution) and its size."""
    folders = local_wheel_dirs() if folders is None else folders
    rows = []
    for wheel in WHEELS:
        path = find_wheel(wheel, folders)
        row = {"dist": wheel.dist, "version": wheel.version, "why": wheel.why, "path": None, "bytes": None}
        if path is not None:
            row.update(path=str(path), bytes=slimmed_size(path, wheel.drop) if wheel.drop else path.stat().st_size,
                       found="wheel" + (" (slimmed size)" if wheel.drop else ""))
        else:
            have = installed_version(wheel.dist)
            row["found"] = (f"installed {have}" if have == wheel.version else
                            f"installed {have}, not {wheel.version}" if have else "missing")
        rows.append(row)
    return rows


def slim_wheel(path: Path, drop: tuple[str, ...]) -> None:
    """Rewrite the wheel at ``path`` without the members matching ``drop`` (and their RECORD lines)."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if any(fnmatch.fnmatch(info.filename, p) for p in drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(keepends=True)
                               if not any(fnmatch.fnmatch(line.split(",")[0], p) for p in drop)).encode()
            dst.writestr(info, data)
    tmp.replace(path)


def platform_tags(glibc_minor: int = GPU_IMAGE_GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a Linux x86-64 machine with glibc 2.``glibc_minor`` installs, newest first.

    ``pip download --platform`` matches only the tags it is given (it does not expand ``manylinux_2_28`` to the
    older ones the way an installing pip does), and the wheels in :data:`WHEELS` use several:
    bitsandbytes 0.50.2 ships only ``manylinux_2_24``, pyarrow ``manylinux_2_28``, others ``manylinux2014``.
    """
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc_minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def fetch_wheels(python_version: str) -> int:
    """On a machine with network: download every listed wheel for the GPU image's Python, then slim them."""
    WHEEL_DIR.mkdir(exist_ok=True)
    platforms = [arg for tag in platform_tags() for arg in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           python_version, *platforms, "-d", str(WHEEL_DIR), *(f"{w.dist}=={w.version}" for w in WHEELS)]
    print(" ".join(cmd))
    if subprocess.run(cmd).returncode:
        return 1
    for wheel in WHEELS:
        path = find_wheel(wheel, [WHEEL_DIR])
        if path is not None and wheel.drop:
            slim_wheel(path, wheel.drop)
    total = sum(p.stat().st_size for p in WHEEL_DIR.glob("*.whl"))
    print(f"gpu_wheels/: {total / 2**20:.1f} MiB (limit {MAX_WHEEL_BYTES / 2**20:.0f} MiB)")
    return 0 if total <= MAX_WHEEL_BYTES else 1


def install_wheels() -> str | None:
    """Install the travelling wheels and the checkout; a one-line reason when something is missing."""
    missing = [f"{w.dist}=={w.version}" for w in WHEELS if find_wheel(w, [WHEEL_DIR]) is None]
    if missing:
        return (f"gpu_wheels/ lacks {', '.join(missing)}: fetch them on a machine with network "
                "(python scripts/gpu_check.py --fetch-wheels --python-version X.Y)")
    wheels = [str(find_wheel(w, [WHEEL_DIR])) for w in WHEELS]
    for cmd in ([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *wheels],
                [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
                 "-e", str(CHECKOUT)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return f"{' '.join(cmd[:6])} ... failed: {last[0]}"
    return None


# -- steps ------------------------------------------------------------------------------------------


def run_step(step: Step, device: str, env: dict[str, str], timeout: float) -> dict:
    """``harness run ARGS --device DEVICE --json`` in a fresh process: its figures, or why it failed."""
    cmd = [sys.executable, "-m", "harness.cli", "run", *step.args, "--device", device, "--json"]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    try:
        record = json.loads(done.stdout)
    except ValueError:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:]
        return {"status": f"failed (exit {done.returncode}): {tail[0][:160] if tail else 'no output'}",
                "seconds": seconds}
    return figures(record, seconds)


def figures(record: dict, seconds: float) -> dict:
    """The table's columns from a ``harness run --json`` record."""
    profile = record.get("profile") or {}
    metrics = next(iter((record.get("metrics") or {}).values()), {})
    peak = profile.get("eval_peak_gpu_bytes") or profile.get("peak_gpu_bytes")
    tok_s = profile.get("bs1_decode_tokens_per_s")
    return {
        "status": record.get("status", "?"),
        "seconds": seconds,
        "accuracy": (metrics.get("accuracy") or {}).get("value"),
        "weight_bytes": profile.get("weight_bytes"),
        "peak_gpu_mib": peak / 2**20 if peak else None,
        "ttft_ms": profile.get("bs1_ttft_ms"),
        "ms_per_token": 1000.0 / tok_s if tok_s else None,
        "kernels": ",".join(profile.get("kernels") or [])[:40],
    }


def table(rows: list[tuple[str, str, dict]]) -> str:
    """One plain-text table: a row per step."""
    cols = ("step", "what", "status", "s", "acc", "weights MiB", "peak GPU MiB", "TTFT ms", "ms/token", "kernels")

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [[name, what, r.get("status", "?")[:60], fmt(r.get("seconds"), ".0f"), fmt(r.get("accuracy"), ".3f"),
              fmt(r["weight_bytes"] / 2**20 if r.get("weight_bytes") else None, ".2f"),
              fmt(r.get("peak_gpu_mib"), ".1f"), fmt(r.get("ttft_ms"), ".1f"), fmt(r.get("ms_per_token"), ".2f"),
              r.get("kernels") or "-"] for name, what, r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *lines)]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in [list(cols), *lines]]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def wheel_table(rows: list[dict]) -> str:
    known = sum(r["bytes"] or 0 for r in rows)
    lines = [f"{r['dist']:24s} {r['version']:12s} {(r['bytes'] or 0) / 2**20:7.2f} MiB  {r['found']}"
             f"  ({r['why']})" for r in rows]
    lines.append(f"{'total of the wheels found':37s} {known / 2**20:7.2f} MiB (limit {MAX_WHEEL_BYTES / 2**20:.0f} "
                 f"MiB; {sum(1 for r in rows if r['bytes'] is None)} without a wheel file here)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on CPU: resolve the wheel list, run the steps tiny")
    p.add_argument("--only", default="", help="comma-separated steps (eval,bnb4,bnb8,gptq,fp8,grpo); default all")
    p.add_argument("--limit", type=int, default=0, help="problems per evaluation (default 100 on GPU, 4 dry)")
    p.add_argument("--json", dest="json_out", default="", help="also write the results to this file")
    p.add_argument("--no-install", action="store_true", help="on a GPU: the wheels are installed already")
    p.add_argument("--fetch-wheels", action="store_true", help="download and slim the wheels (needs network)")
    p.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}",
                   help="--fetch-wheels: the GPU image's Python version")
    args = p.parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(args.python_version)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "--dry-run for the CPU rehearsal", file=sys.stderr)
        return EXIT_USAGE
    chosen = steps(args.limit or (4 if args.dry_run else 100))
    names = [s.name for s in chosen]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in wanted if n not in names]
        if bad:
            print(f"gpu_check: unknown step {', '.join(bad)}; steps: {', '.join(names)}", file=sys.stderr)
            return EXIT_USAGE
        chosen = [s for s in chosen if s.name in wanted]

    start = time.perf_counter()
    wheels = resolve_wheels()
    print(wheel_table(wheels), flush=True)
    if args.dry_run:
        device = "cpu"
    else:
        device = "cuda"
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
              flush=True)
        reason = None if args.no_install else install_wheels()
        if reason:
            print(f"gpu_check: {reason}", file=sys.stderr)
            return EXIT_USAGE

    work = Path(tempfile.mkdtemp(prefix="harness-gpu-check-"))
    env = dict(os.environ, HARNESS_STORE=str(work / "results.db"), HARNESS_CACHE_DIR=str(work / "cache"),
               HARNESS_DIVERGENCE="0", PYTHONPATH=str(CHECKOUT))
    rows = []
    for step in chosen:
        left = BUDGET_S - (time.perf_counter() - start)
        if left < 30:
            step.result = {"status": "skipped: the 8-minute budget is spent"}
        else:
            print(f"gpu_check: {step.name} ({step.what}) on {device} ...", file=sys.stderr, flush=True)
            step.result = run_step(step, device, env, timeout=left)
        rows.append((step.name, step.what, step.result))
    print(table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"device": device, "wheels": wheels,
                                                   "steps": {n: r for n, _, r in rows}}, indent=1))
    return 0 if all(r.get("status") == "complete" for _, _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
