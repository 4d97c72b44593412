"""Generation engines: what serves an artifact during evaluation and profiling (see :mod:`harness.core.engine`).

Built-ins, registered through the ``register_engines`` hook like any plugin:
``hf`` (transformers in this process, the default), ``vllm`` (vLLM's server
from its own environment) and ``openai`` (any OpenAI-compatible server); the
``formats`` plugin registers the artifact formats the built-in strategies write
(``register_formats``), which engines name in what they declare they run.
"""
