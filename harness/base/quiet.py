"""Keep library chatter off the console: progress bars and per-call warnings of transformers,
bitsandbytes (a warning on every 8-bit matmul), llmcompressor (loguru INFO) and compressed-tensors
(tqdm bars), and torch.fx's tracing advice. Nothing here hides an error or a warning about the
user's own input."""

from __future__ import annotations

import logging
import os
import warnings

from harness.compat.tqdm import silence_bars


def quiet_libraries() -> None:
    """Turn the libraries' chatter down for the rest of the process; safe to call more than once."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # llmcompressor and compressed-tensors draw a tqdm bar per layer pass; the harness draws its own
    os.environ.setdefault("TQDM_DISABLE", "1")
    # llmcompressor configures a loguru sink on *stdout* at import; keep it to errors
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    for name in ("bitsandbytes", "transformers", "accelerate", "datasets", "llmcompressor", "compressed_tensors"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # transformers' save_pretrained, on every save of a model llmcompressor dispatched on the CPU:
    # it is the default 50 GB shard size, not a memory problem of this run
    warnings.filterwarnings("ignore", message="Attempting to save a model with offloaded modules")
    # torch.fx, once per process when llmcompressor traces a model for its sequential pipeline:
    # advice to torch's own developers (is_fx_tracing vs is_fx_symbolic_tracing)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    # compressed-tensors passes disable= to its bars explicitly, past TQDM_DISABLE: the seam wraps tqdm
    silence_bars()
