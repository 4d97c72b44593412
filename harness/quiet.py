"""Keep library chatter off the console: progress bars and per-call warnings of transformers,
bitsandbytes (a warning on every 8-bit matmul) and llmcompressor (loguru INFO)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
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
