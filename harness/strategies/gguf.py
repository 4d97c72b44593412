"""``gguf``: llama.cpp's GGUF file in one of its quantization types, the format most local deployments run.

The source model (the base, or a trained checkpoint) is converted to an f32 GGUF file by the converter of
the llamacpp engine's own llama.cpp release (:mod:`harness.toolkit.llamacpp`), then quantized by that
release's ``llama_model_quantize`` to the chosen type: the k-quants people download (Q8_0, Q6_K, Q5_K_M,
Q4_K_M, Q3_K_M, Q2_K) and a few simpler ones. ``--bits`` names the usual type of each width; ``--strategy-opt
type=...`` picks another of the same width. The k-quants mix widths (Q4_K_M keeps some tensors at 6 bits), so
the report gives the effective bits per weight of the file as written.

Only the llamacpp engine runs the result (the format is ``named_engines_only``): transformers could
dequantize a GGUF file, but that would time a full-precision model, not llama.cpp's integer kernels.

``--strategy-opt imatrix=true`` is llama.cpp's importance-matrix variant: the k-quants (and Q4_0/Q5_0) weight
each input column's rounding error by how large its activations are on real text. llama.cpp computes the
matrix with its ``llama-imatrix`` tool, which llama-cpp-python does not build; here it is computed in
transformers on the run's calibration texts (:mod:`harness.toolkit.activation_stats`, the mean of x^2 per input
column of every linear layer, as that tool collects it), named as the converter names the file's tensors, and
passed to ``llama_model_quantize`` as its ``imatrix`` arrays. So the variant is calibrated like GPTQ or AWQ:
its calibration data, prompt and seed are part of its artifact key, and its seeds differ.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.api import ArtifactFormat, QuantContext, QuantReport, QuantSpec, Strategy, Timer, UserError
from harness.base.model import load_model
from harness.base.threads import usable_cores
from harness.tiny import embedded_tokenizer
from harness.toolkit import llamacpp
from harness.toolkit.activation_stats import mean_squared_inputs
from harness.toolkit.compress import full_precision_bytes, require_calibration

#: the pre-tokenizer llama.cpp implements that the embedded models' tokenizers use (byte-level BPE, digits split
#: one by one, as Qwen2's): the converter cannot recognise a tokenizer trained here by its hash
EMBEDDED_PRE_TOKENIZER = "qwen2"
#: the files beside the GGUF file: the harness renders prompts with the model's own tokenizer and chat template
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja")
#: types whose quantization ignores an importance matrix (unquantized, or Q8_0's plain absmax per block)
IGNORES_IMATRIX = ("F32", "F16", "Q8_0")


@dataclass
class GGUFOptions:
    type: str = field(default="", metadata={
        "help": "llama.cpp quantization type: " + ", ".join(n for n in llamacpp.TYPES if n not in ("F32", "F16"))
                + " (F16, F32 unquantized); default: the one --bits names (8 Q8_0, 6 Q6_K, 5 Q5_K_M, 4 Q4_K_M, "
                  "3 Q3_K_M, 2 Q2_K)"})
    pre_tokenizer: str = field(default="", metadata={
        "help": "the BPE pre-tokenizer to declare when llama.cpp's converter does not recognise the tokenizer "
                "(a name llama.cpp implements, e.g. qwen2, llama-bpe); default: qwen2 for the embedded models' "
                "tokenizers, none otherwise (an unknown tokenizer is refused)"})

    imatrix: bool = field(default=False, metadata={
        "help": "quantize with an importance matrix computed on the run's calibration texts (mean squared input "
                "activations per column, as llama-imatrix collects them); k-quants, Q4_0 and Q5_0"})
    num_samples: int = field(default=64, metadata={"help": "calibration texts of the importance matrix"})
    max_length: int = field(default=512, metadata={
        "help": "importance-matrix calibration texts are truncated to this many tokens"})

    def __post_init__(self) -> None:
        if self.type:
            self.type = llamacpp.gguf_type(self.type).name
        if self.num_samples < 1 or self.max_length < 1:
            raise UserError(f"gguf: num_samples and max_length must be at least 1, got {self.num_samples} and "
                            f"{self.max_length}")


class GGUFFile(ArtifactFormat):
    name = "gguf"
    description = "a llama.cpp GGUF file (k-quants and others), run by llama.cpp"
    priority = 30  # the folder keeps the model's config.json beside the file: ask before plain weights
    named_engines_only = True

    def recognises(self, model_dir: Path, config: dict[str, Any]) -> bool:
        return llamacpp.gguf_file(model_dir) is not None


class GGUF(Strategy):
    name = "gguf"
    description = "llama.cpp GGUF k-quants (Q8_0 ... Q2_K), converted and quantized by llama.cpp; llamacpp engine"
    bits = (4, 8, 6, 5, 3, 2, 16, 32)
    options_class = GGUFOptions
    artifact_format = GGUFFile.name
    libraries = ("transformers",)
    reference_bits = 32  # the F32 file: the converted model unquantized, on the same engine

    def unavailable_reason(self) -> str | None:
        return llamacpp.environment_reason()

    def kind(self, spec: QuantSpec, options: GGUFOptions) -> llamacpp.GGUFType:
        """The type these settings write: the option's, which must be of ``--bits``' width, else the width's own."""
        default = llamacpp.gguf_type(llamacpp.TYPE_FOR_BITS[spec.bits])
        if not options.type:
            return default
        kind = llamacpp.gguf_type(options.type)
        if kind.bits != spec.bits:
            raise UserError(f"GGUF type {kind.name} is {kind.bits}-bit but the run asks for --bits {spec.bits}; "
                            f"pass --bits {kind.bits} (or leave the type out: --bits {spec.bits} writes "
                            f"{default.name})")
        return kind

    def _checked_kind(self, spec: QuantSpec, options: GGUFOptions) -> llamacpp.GGUFType:
        kind = self.kind(spec, options)
        if options.imatrix and kind.name in IGNORES_IMATRIX:
            raise UserError(f"GGUF type {kind.name} ignores an importance matrix (imatrix=true); it weights the "
                            "k-quants, Q4_0 and Q5_0 (e.g. --bits 4, Q4_K_M)")
        return kind

    def calibrates_with(self, options: GGUFOptions) -> bool:
        return options.imatrix

    def artifact_format_for(self, spec: QuantSpec, options: Any) -> str:
        self._checked_kind(spec, options)  # a type of another width is refused when the run is planned
        return self.artifact_format

    def quantize(self, model_dir: Path, out_dir: Path, ctx: QuantContext) -> QuantReport:
        python = llamacpp.ENVIRONMENT.find(None)
        if python is None:
            raise UserError(f"strategy 'gguf' is unavailable: {llamacpp.ENVIRONMENT.missing_reason(None)}")
        kind = self._checked_kind(ctx.spec, ctx.options)
        opts: GGUFOptions = ctx.options
        texts = ctx.calibration[: opts.num_samples] if opts.imatrix else []
        if opts.imatrix:
            require_calibration(texts, self.name)
        pre = ctx.options.pre_tokenizer or (EMBEDDED_PRE_TOKENIZER if embedded_tokenizer(model_dir) else "")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"model-{kind.name}.gguf"
        imatrix: dict[str, Any] | None = None
        with Timer() as t, tempfile.TemporaryDirectory(prefix="harness-gguf-") as tmp:
            f32 = llamacpp.convert(model_dir, Path(tmp) / "model-F32.gguf", python, pre)
            matrix = None
            if opts.imatrix:
                stats, tokens = mean_squared_inputs(load_model(model_dir, "cpu"), ctx.tokenizer, texts, opts.max_length)
                matrix, tensors = llamacpp.write_imatrix(stats, f32, python, Path(tmp) / "imatrix.npz")
                imatrix = {"tensors": tensors, "texts": len(texts), "tokens": tokens}
            if kind.name == "F32":
                shutil.move(str(f32), target)
            else:
                llamacpp.quantize(f32, target, kind, python, usable_cores(), imatrix=matrix)
        for name in SIDE_FILES:
            if (Path(model_dir) / name).exists():
                shutil.copy2(Path(model_dir) / name, out_dir / name)
        written = target.stat().st_size
        fp_bytes = full_precision_bytes(model_dir)
        params = fp_bytes / 2
        return QuantReport(
            weight_bytes=written, fp_bytes=fp_bytes, seconds=t.seconds,
            versions={"llama-cpp-python": llamacpp.library_version(python)},
            extra={"gguf_type": kind.name, "gguf_bits_per_weight": round(written * 8 / params, 3),
                   "gguf_pre_tokenizer": pre or None, "gguf_file": target.name, "gguf_imatrix": imatrix},
        )

    def load(self, model_dir: Path, device: str):
        raise UserError(f"a GGUF artifact ({model_dir}) runs on the llamacpp engine only (--engine llamacpp)")


@hookimpl
def register_strategies(register):
    register(GGUF())


@hookimpl
def register_formats(register):
    register(GGUFFile())
