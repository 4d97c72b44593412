"""llama.cpp's converter: ``convert_hf_to_gguf.py`` run with a declared BPE pre-tokenizer.

The converter recognises a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed text, and refuses
a tokenizer whose hash it does not know ("BPE pre-tokenizer was not recognized") even when the tokenizer's
pre-tokenizer is one it implements. The embedded models' tokenizers were trained here (byte-level BPE with
single-digit splitting, as Qwen2's), so their hash is unknown; declared ``qwen2``, they convert with token ids
equal to transformers' (tests/test_gguf.py checks). This module wraps ``TextModel.get_vocab_base_pre`` so
that the declared name is used *only* where the converter's own recognition fails: a tokenizer it knows
keeps its own answer.

The converter is not a package: it ships in llama-cpp-python's source distribution (``vendor/llama.cpp``),
which the llamacpp engine's environment keeps beside itself (``scripts/setup_llamacpp_env.sh``) with the
release's version, so strategy and engine use the same llama.cpp. It runs in the harness's environment
(it needs torch and transformers, which the server's environment has no use for), as

    python -m harness.compat.llamacpp CONVERTER_DIR PRE_TOKENIZER MODEL_DIR --outtype f32 --outfile OUT

(``-m``, not the file's path: this folder's ``tqdm.py`` and ``trl.py`` would shadow the libraries).

The same entry point names tensors as the converter does, for an importance matrix computed in transformers
(the gguf strategy's ``imatrix`` option): ``--tensor-names GGUF_FILE NAMES_JSON OUT_JSON`` maps each
transformers weight name through the converter's own ``gguf.get_tensor_name_map`` for the file's
architecture and keeps the names the file holds.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

from harness.compat import Seam

SEAM = Seam(
    library="llama-cpp-python",
    written_against="0.3.36",
    supported=">=0.3.36,<0.4",
    what="llama.cpp's convert_hf_to_gguf.py (conversion.base.TextModel.get_vocab_base_pre wrapped to declare "
         "the pre-tokenizer of a tokenizer it does not recognise)",
)

#: the converter's entry point inside the converter folder
CONVERTER = "convert_hf_to_gguf.py"
#: the file in the converter folder that records which llama-cpp-python release it came from
VERSION_FILE = "VERSION"


def converter_version(converter_dir: Path) -> str:
    """The release the converter came from, checked against :data:`SEAM`'s range (UserError outside it)."""
    try:
        found = (Path(converter_dir) / VERSION_FILE).read_text().strip()
    except OSError:
        found = "unknown"
    if found == "unknown":
        from harness.base.errors import UserError

        raise UserError(f"the llama.cpp converter in {converter_dir} records no version ({VERSION_FILE}); "
                        "rebuild the environment with scripts/setup_llamacpp_env.sh")
    return SEAM.check(found)


def command(python: str, converter_dir: Path, pre_tokenizer: str, model_dir: Path, outfile: Path,
            outtype: str = "f32") -> list[str]:
    """The command that converts ``model_dir`` to a GGUF file (``pre_tokenizer``: "" declares none)."""
    return [python, "-m", "harness.compat.llamacpp", str(converter_dir), pre_tokenizer or "-", str(model_dir),
            "--outtype", outtype, "--outfile", str(outfile)]


def tensor_names_command(python: str, converter_dir: Path, gguf_file: Path, names_file: Path,
                         out_file: Path) -> list[str]:
    """The command that writes ``{transformers weight name: the GGUF file's tensor name}`` into ``out_file`` for
    the names listed (a JSON array) in ``names_file``; names the file does not hold are left out."""
    return [python, "-m", "harness.compat.llamacpp", str(converter_dir), "--tensor-names", str(gguf_file),
            str(names_file), str(out_file)]


def _tensor_names(gguf_file: str, names_file: str, out_file: str) -> None:
    import gguf

    reader = gguf.GGUFReader(gguf_file)
    arch_name = reader.fields["general.architecture"].contents()
    blocks = int(reader.fields[f"{arch_name}.block_count"].contents())
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    mapping = gguf.get_tensor_name_map(arch, blocks)
    held = {tensor.name for tensor in reader.tensors}
    names = json.loads(Path(names_file).read_text())
    mapped = {name: mapping.get_name(name, try_suffixes=(".weight", ".bias")) for name in names}
    Path(out_file).write_text(json.dumps({k: v for k, v in mapped.items() if v in held}))


def _declare(pre_tokenizer: str) -> None:
    from conversion import base

    original = base.TextModel.get_vocab_base_pre

    def recognised_or_declared(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if pre_tokenizer:
                return pre_tokenizer
            raise

    base.TextModel.get_vocab_base_pre = recognised_or_declared


def main(argv: list[str]) -> None:
    converter_dir, pre_tokenizer, *rest = argv
    converter_dir = str(Path(converter_dir).resolve())
    sys.path[:0] = [converter_dir, str(Path(converter_dir) / "gguf-py")]  # its own gguf, not the registry's
    if pre_tokenizer == "--tensor-names":
        _tensor_names(*rest)
        return
    _declare("" if pre_tokenizer == "-" else pre_tokenizer)
    sys.argv = [str(Path(converter_dir) / CONVERTER), *rest]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
