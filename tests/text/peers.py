"""Peer CLIP-family models with small scrambled text and image towers, saved as their hubs lay them out.

Each builder returns (folder or file, peer model); the folders hold the tokenizer files the hubs ship
(open_clip's BPE file from its wheel, a SentencePiece model trained here, a CLIP tokenizer.json written
by transformers), so vitcli reads them as a user's download. Nothing is downloaded.
"""

import json
import shutil
from pathlib import Path

import torch

from tests.checkpoints.parity import scramble

AWKWARD = [
    "a photo of a cat",
    "",
    "!!! ... ??? ---",
    "Ünïcödé naïve café – “quotes” and ½ ∑ 東京タワー",
    "emoji 🐱🐶🚀 and ZWJ 👩‍👩‍👧",
    "  Mixed   CASE\twith\ntabs &amp; HTML &lt;b&gt;  ",
    "it's the cat's toy, isn't it? we'll see.",
    "snake_case_label and 12345 numbers 3.14159",
    " ".join(f"word{i % 37}" for i in range(500)),  # longer than any context: truncated
]
PROMPTS = ["a photo of a cat", "a photo of a dog", "", "Ünïcödé 🐱 " + "long " * 100]
SP_CORPUS = "\n".join(f"a photo of a {a} {b} near the {c} number {i}" for i, (a, b, c) in enumerate(
    zip(["cat", "dog", "bird", "fish", "horse", "zebra", "café", "naïve"] * 40,
        ["jumping", "sleeping", "flying", "swimming", "running", "東京", "quick", "lazy", "brown"] * 36,
        ["sea", "tree", "house", "river", "mountain", "city", "garden"] * 46)))


def open_clip_bpe() -> Path:
    """CLIP's BPE merges as open_clip ships them in its wheel."""
    import open_clip.tokenizer

    return Path(open_clip.tokenizer.default_bpe())


def train_sentencepiece(folder: Path, vocab: int = 120) -> Path:
    """A small SentencePiece unigram model trained on SP_CORPUS (big_vision's SigLIP tokenizer is one)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text(SP_CORPUS)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=vocab,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
                                   character_coverage=1.0, num_threads=1,
                                   hard_vocab_limit=False)
    corpus.unlink()
    (folder / "spiece.vocab").unlink()
    return folder / "spiece.model"


def siglip_tokenizer(folder: Path, context: int = 64):
    """transformers' SiglipTokenizer on a SentencePiece model trained here, saved into `folder`."""
    from transformers import SiglipTokenizer

    model = train_sentencepiece(folder / "sp")
    tok = SiglipTokenizer(vocab_file=str(model), model_max_length=context)
    tok.save_pretrained(str(folder))
    shutil.rmtree(folder / "sp")
    return tok


def clip_vocab_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt as Hugging Face's CLIP repositories hold them, from open_clip's BPE file."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode

    lines = gzip.decompress(open_clip_bpe().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    alphabet = list(bytes_to_unicode().values())
    vocab = alphabet + [a + "</w>" for a in alphabet] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


def hf_clip_tokenizer(folder: Path):
    """transformers' CLIPTokenizer read from vocab.json + merges.txt and saved (tokenizer.json) into `folder`."""
    from transformers import CLIPTokenizer

    clip_vocab_files(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return tok


def siglip2_tokenizer(folder: Path):
    """transformers' Siglip2Tokenizer (Gemma's BPE with byte fallback, lower case, left padding) on a small
    character vocabulary with a few merges, saved into `folder` (tokenizer.json, tokenizer_config.json)."""
    from transformers import AutoTokenizer, Siglip2Tokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789▁.,!?'":
        vocab[c] = len(vocab)
    vocab.update({f"<0x{b:02X}>": len(vocab) + i for i, b in enumerate(range(256))})  # Gemma's byte fallback
    merges = [("▁", "a"), ("▁", "c"), ("c", "a"), ("a", "t"), ("▁", "p"), ("p", "h"), ("o", "t")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    Siglip2Tokenizer(vocab=vocab, merges=merges).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))  # as a user loads it: the class the folder names


def open_clip_text_cfg(siglip: bool, width: int = 128, heads: int = 2, vocab: int = 49408, context: int = 77) -> dict:
    """A 2-block text tower: CLIP's (causal, argmax pooling) or SigLIP's (bidirectional, last token, Linear
    projection with bias, tanh GELU, eps 1e-6) as open_clip's model configs have them."""
    cfg = {"context_length": context, "vocab_size": vocab, "width": width, "heads": heads, "layers": 2}
    if siglip:
        cfg.update(no_causal_mask=True, proj_bias=True, pool_type="last", norm_kwargs={"eps": 1e-6},
                   act_kwargs={"approximate": "tanh"}, tokenizer_kwargs={"clean": "canonicalize"},
                   hf_tokenizer_name="local")
    return cfg


def open_clip_model(siglip: bool, seed: int, quick_gelu: bool = False, vocab: int = 49408, context: int = 77,
                    custom: bool = False):
    """open_clip CLIP (or CustomTextCLIP with SigLIP's text tower and logit_bias; `custom`: CustomTextCLIP with
    CLIP's text tower, as PE's configs have it): a 2-block image tower of width 128 and a 2-block text tower,
    scrambled."""
    import open_clip

    cfg = {"embed_dim": 96, "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16,
                                           "head_width": 64},
           "text_cfg": open_clip_text_cfg(siglip, vocab=vocab, context=context)}
    if siglip or custom:
        cfg["custom_text"] = True
        model = open_clip.CustomTextCLIP(**{k: v for k, v in cfg.items() if k != "custom_text"}, quick_gelu=quick_gelu,
                                         init_logit_bias=-10.0 if siglip else None)
    else:
        model = open_clip.CLIP(**cfg, quick_gelu=quick_gelu)
    return scramble(model, seed), cfg


def save_open_clip(folder: Path, model, cfg: dict, quick_gelu: bool = False) -> Path:
    """The model as an open_clip hub repository: open_clip_model.safetensors and open_clip_config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**cfg, "quick_gelu": quick_gelu},
                                                              "preprocess_cfg": {}}))
    return folder


def hf_model(kind: str, seed: int, vocab: int = 49408, context: int = 77):
    """transformers CLIPModel, SiglipModel or Siglip2Model with 2-block towers of width 64, scrambled."""
    import transformers

    text = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": context}
    vision = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}
    if kind == "clip":
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=48)
        model = transformers.CLIPModel(config)
    elif kind == "siglip":
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        model = transformers.SiglipModel(config)
    else:
        vision = {k: v for k, v in vision.items() if k != "image_size"} | {"num_patches": 4}
        config = transformers.Siglip2Config(text_config=text, vision_config=vision)
        model = transformers.Siglip2Model(config)
    return scramble(model, seed)


def save_hf(folder: Path, model) -> Path:
    model.save_pretrained(str(folder))
    return folder


def diff(a, b) -> float:
    a = torch.as_tensor(a).float()
    b = torch.as_tensor(b).float()
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a - b).abs().max().item()
