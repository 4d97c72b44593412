"""Prompt templates, kept as data in ``harness/benchmarks/prompts.toml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import tomllib

from harness.base.errors import UnknownNameError


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    template: str
    chat: bool
    description: str = ""
    #: the extraction policy the prompt implies (``strict``/``lenient``; None: no opinion),
    #: see harness.core.grading_policy
    extraction: str | None = None

    def render(self, problem: str, tokenizer: Any = None) -> str:
        """The prompt text; wrapped in the tokenizer's chat template when both allow it."""
        text = self.template.format(problem=problem)
        if self.chat and tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text


@cache
def templates() -> dict[str, PromptTemplate]:
    raw = tomllib.loads(
        resources.files("harness.benchmarks").joinpath("prompts.toml").read_text("utf-8")
    )
    return {
        name: PromptTemplate(name, spec["template"], bool(spec.get("chat", True)), spec.get("description", ""),
                             spec.get("extraction"))
        for name, spec in raw.items()
    }


def get_template(name: str) -> PromptTemplate:
    try:
        return templates()[name]
    except KeyError:
        raise UnknownNameError("prompt template", name, templates()) from None
