#!/usr/bin/env bash
# The llamacpp engine's own environment (.venv-llamacpp beside the checkout, or the folder given): llama-cpp-python
# with its OpenAI-compatible server, built from source (the registry publishes no wheel; about 19 minutes on two
# cores the first time, seconds afterwards from pip's wheel cache), and llama.cpp's converter of the same release
# beside it (the wheel installs only the llama_cpp module; the converter ships in the source distribution).
#
#   scripts/setup_llamacpp_env.sh [FOLDER]        then: export HARNESS_LLAMACPP_PYTHON=$PWD/.venv-llamacpp/bin/python
set -euo pipefail
VERSION=0.3.36
ENV_DIR=${1:-.venv-llamacpp}
# no llava/mtmd library (the harness serves text models); the CPU's own instruction set, as a local build should
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m venv "$ENV_DIR"
"$ENV_DIR/bin/python" -m pip install -q --upgrade pip
"$ENV_DIR/bin/pip" install -q "llama-cpp-python[server]==$VERSION"

# the converter (convert_hf_to_gguf.py, its conversion/ package and the gguf-py it needs) from the same release
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
"$ENV_DIR/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$src"
tar -xzf "$src"/llama_cpp_python-"$VERSION".tar.gz -C "$src" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp/conversion" \
    "llama_cpp_python-$VERSION/vendor/llama.cpp/gguf-py"
rm -rf "$ENV_DIR/llama.cpp"
mv "$src/llama_cpp_python-$VERSION/vendor/llama.cpp" "$ENV_DIR/llama.cpp"
echo "$VERSION" > "$ENV_DIR/llama.cpp/VERSION"
echo "llama.cpp environment ready: $ENV_DIR (llama-cpp-python $VERSION, converter in $ENV_DIR/llama.cpp)" >&2
