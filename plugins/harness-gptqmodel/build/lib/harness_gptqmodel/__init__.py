"""GPTQ extensions for the quant-rl-harness, packaged the way a third party would.

Installing this distribution adds the strategies ``gptqmodel`` and
``autogptq`` through the ``harness`` entry point; nothing in the harness names
them. Their backends are optional: a strategy whose library cannot be imported
is still registered and ``harness plugins`` lists it as unavailable, with why.
"""

__version__ = "0.1.0"
