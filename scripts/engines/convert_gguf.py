"""Runs llama.cpp's convert_hf_to_gguf.py on the tiny model, declaring its
tokenizer's pre-tokenizer "gpt-2".

The converter names a BPE pre-tokenizer by the hash of one sample's tokens
and refuses a hash it does not know; a tokenizer trained here has a hash of
its own, but splits text exactly as GPT-2 does (tokenizers' ByteLevel), which
is what "gpt-2" tells llama.cpp to do.
Usage: python convert_gguf.py LLAMA_CPP_SOURCES [converter arguments...]
"""

import sys
from pathlib import Path

sources = Path(sys.argv[1])
sys.path[:0] = [str(sources), str(sources / "gguf-py")]

from conversion import base  # noqa: E402  (found through the path set above)


def _gpt2(self: object, tokenizer: object) -> str:
    return "gpt-2"


base.TextModel.get_vocab_base_pre = _gpt2  # type: ignore[method-assign]
import convert_hf_to_gguf  # noqa: E402

sys.argv = [str(sources / "convert_hf_to_gguf.py"), *sys.argv[2:]]
convert_hf_to_gguf.main()
