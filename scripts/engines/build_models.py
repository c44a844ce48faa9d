"""Builds the tiny model the engine tests serve, with no model hub: a byte-level
BPE tokenizer trained here on generated text, and random weights in the Llama
architecture, saved as a Hugging Face folder (vLLM loads it; the GGUF converter
reads it for llama.cpp).

Run in the vLLM venv (it has torch, transformers and tokenizers):
    python build_models.py OUT_DIR

The special tokens (end of text, the chat markers) are made unreachable: every
token's embedding carries a positive constant in dimension 0 that no layer
writes to (row 0 of each output projection is zero), so the final norm's
dimension 0 is always positive, and the special tokens' output rows are a large
negative weight on that dimension alone. An unstopped request therefore always
runs to ``max_tokens``, which makes "tokens generated after the stop" exact.
"""

import json
import random
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SEED = 21
VOCAB = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Sized so that on 2 cores decoding runs at about 100-200 tokens/s and a prompt
# of a few thousand tokens takes a measurable fraction of a second to process.
SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 8192,
}
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CARRIER = 0.1  # dimension 0 of every embedding (the others are about 0.02)
UNREACHABLE = -2000.0  # the special tokens' weight on dimension 0 (fits in f16)


def corpus(rng: random.Random, lines: int = 40_000) -> list[str]:
    """Sentences of made-up words: enough structure for BPE to learn merges."""
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    marks = [".", ",", "?", "!", ";", ":"]
    out = []
    for _ in range(lines):
        sentence = " ".join(rng.choices(words, k=rng.randint(4, 16)))
        out.append(sentence.capitalize() + rng.choice(marks) + " " + str(rng.randint(0, 999)))
    return out


def build_tokenizer(out: Path, rng: random.Random) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(rng), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=SPECIAL[0],
        eos_token=SPECIAL[0],
        unk_token=SPECIAL[0],
        pad_token=SPECIAL[0],
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer: PreTrainedTokenizerFast) -> int:
    torch.manual_seed(SEED)
    special = [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        bos_token_id=special[0],
        eos_token_id=special[0],
        pad_token_id=special[0],
        torch_dtype="float32",
        **SHAPE,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = CARRIER
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[special, :] = 0.0
        model.lm_head.weight[special, 0] = UNREACHABLE
    check_unreachable(model, tokenizer, special)
    model.save_pretrained(out, safe_serialization=True)
    generation = {"bos_token_id": special[0], "eos_token_id": special[0], "do_sample": True}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return sum(p.numel() for p in model.parameters())


def check_unreachable(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, special: list[int]
) -> None:
    """Fails the build if a special token could ever be sampled on a sample prompt."""
    prompt = "\n".join(corpus(random.Random(SEED + 1), lines=60))
    ids = tokenizer(prompt, return_tensors="pt").input_ids[:, :1024]
    with torch.no_grad():
        logits = model(ids).logits[0]
    margin = (logits.max(dim=-1).values - logits[:, special].max(dim=-1).values).min().item()
    if margin < 100:
        raise SystemExit(f"special tokens are reachable: logit margin {margin:.1f}")
    print(f"special tokens unreachable: logit margin at least {margin:.0f} over {ids.shape[1]} tokens")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, random.Random(SEED))
    params = build_model(out, tokenizer)
    print(f"built {out}: {params / 1e6:.1f} M parameters, vocabulary {len(tokenizer)}, {SHAPE}")


if __name__ == "__main__":
    main()
