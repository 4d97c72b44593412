"""Which extraction policy a run grades with: preset, explicit choice, prompt template, default.

A prompt template may declare the policy it implies (``extraction = "lenient"``
in ``harness/benchmarks/prompts.toml``): a prompt that asks for no answer format is
read leniently, one that asks for a box strictly. The rule, first that applies:

1. a preset that fixes a policy (``rlquant``: strict, the seed study's
   grading) -- an explicit other ``--extraction`` with it is an error, since
   the preset would then no longer be the study's evaluation;
2. an explicit ``--extraction``: the user's choice beats the template's;
3. the prompt template's declared policy;
4. ``strict``.
"""

from __future__ import annotations

from harness.base.errors import UserError
from harness.core.config import PRESETS
from harness.core.prompts import get_template
from harness.grading.extraction import check_extraction


def choose_extraction(explicit: str | None, preset: str, prompt: str) -> str:
    """The policy of a run given ``--extraction`` (None: not given), its preset and its prompt template."""
    if explicit is not None:
        check_extraction(explicit)
    fixed = PRESETS.get(preset, {}).get("extraction")
    if fixed is not None:
        if explicit is not None and explicit != fixed:
            raise UserError(f"--preset {preset} fixes --extraction {fixed} (its grading); got --extraction {explicit}")
        return fixed
    if explicit is not None:
        return explicit
    return get_template(prompt).extraction or "strict"
