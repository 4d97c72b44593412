"""Built-in executors (plugins through the ``register_executors`` hook): ``local`` and ``ray``."""
