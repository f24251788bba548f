"""The text tower of a CLIP-family checkpoint: its layout as data, its architecture from shapes and config files.

    text = load_text_tower("ViT-B-32.pt", tokenizer="bpe_simple_vocab_16e6.txt.gz")
    text.config, text.state_dict, text.tokenizer, text.layout

Read only when a text option is given (`embed --text`, `classify`, `--target text:`): the image
commands never read these weights into a model. Layouts (`TEXT_LAYOUTS`, each a `TextLayout` value):
  openai-clip / open_clip   token_embedding, positional_embedding, transformer.resblocks.{i}.*, ln_final,
                            text_projection (D, E) at the top level (OpenAI's .pt and state dicts; open_clip's
                            CLIP), or under `text.` (open_clip's CustomTextCLIP: SigLIP, PE), where
                            text_projection may be a Linear with bias
  hf-clip / hf-siglip       transformers CLIPModel (text_model.*, text_projection.weight), SiglipModel and
                            Siglip2Model (text_model.*, text_model.head with bias, logit_bias)
What shapes cannot show comes from open_clip_config.json's text_cfg or config.json's text_config, else
the family's defaults (CLIP's build_model: heads = D / 64; OpenAI: QuickGELU); the rules are notes.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vitcli.checkpoints.families.base import Rule, _Taker, pair
from vitcli.checkpoints.tokenizers import (
    TOKENIZER_FILES,
    Tokenizer,
    find_tokenizer_file,
    load_tokenizer,
    tokenizer_settings,
)
from vitcli.core.text import TextConfig
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from vitcli.core.text import TextTransformer

NO_TEXT = "holds no text tower: text options need a CLIP-family checkpoint"

OPEN_CLIP_BLOCK = (
    *pair("norm1", "ln_1"),
    Rule("attn.qkv.weight", ("attn.in_proj_weight",)),
    Rule("attn.qkv.bias", ("attn.in_proj_bias",)),
    *pair("attn.proj", "attn.out_proj"),
    Rule("ls1.gamma", ("ls_1.gamma",)),
    *pair("norm2", "ln_2"),
    *pair("mlp.fc1", "mlp.c_fc"),
    *pair("mlp.fc2", "mlp.c_proj"),
    Rule("ls2.gamma", ("ls_2.gamma",)),
)
HF_BLOCK = (
    *pair("norm1", "layer_norm1"),
    *pair("attn.qkv", (tuple(f"self_attn.{n}_proj" for n in "qkv"),)),
    *pair("attn.proj", "self_attn.out_proj"),
    *pair("norm2", "layer_norm2"),
    *pair("mlp.fc1", "mlp.fc1"),
    *pair("mlp.fc2", "mlp.fc2"),
)


@dataclass(frozen=True)
class TextLayout:
    """Where a library keeps its text tower: a marker key, the root, the block names, the key tables."""

    name: str
    library: str  # whose tokenising and masking rules apply: open_clip or transformers
    marker: str  # a key under `root` that only this layout has
    root: str
    block_prefix: str  # with {i}
    top: tuple[Rule, ...]
    block: tuple[Rule, ...]
    outside: tuple[Rule, ...] = (Rule("logit_scale", ("logit_scale",)), Rule("logit_bias", ("logit_bias",)))
    scope: str = ""  # a regex on full keys: the text tower's own (every one must be used or ignored)
    ignore: str = r"(^|\.)(attn_mask|position_ids)$"  # buffers the tower rebuilds itself


OPEN_CLIP_TOP = (
    Rule("token_embedding.weight", ("token_embedding.weight",)),
    Rule("pos_embed", ("positional_embedding",)),
    *pair("norm", "ln_final"),
    Rule("proj.weight", ("text_projection",), "T", unless="text_projection.weight"),  # a (D, E) matrix
    Rule("proj.weight", ("text_projection.weight",)),  # a Linear (open_clip proj_bias)
    Rule("proj.bias", ("text_projection.bias",)),
)
HF_TOP = (
    Rule("token_embedding.weight", ("embeddings.token_embedding.weight",)),
    Rule("pos_embed", ("embeddings.position_embedding.weight",)),
    *pair("norm", "final_layer_norm"),
    *pair("proj", "head"),  # SigLIP's head (Linear with bias)
)

TEXT_LAYOUTS: tuple[TextLayout, ...] = (
    TextLayout("open_clip-custom", "open_clip", "token_embedding.weight", "text.", "transformer.resblocks.{i}.",
               OPEN_CLIP_TOP, OPEN_CLIP_BLOCK, scope=r"^text\."),
    TextLayout("open_clip", "open_clip", "token_embedding.weight", "", "transformer.resblocks.{i}.",
               OPEN_CLIP_TOP, OPEN_CLIP_BLOCK,
               scope=r"^(token_embedding|positional_embedding|transformer|ln_final|text_projection|cls_emb|text_)"),
    TextLayout("transformers", "transformers", "embeddings.token_embedding.weight", "text_model.",
               "encoder.layers.{i}.", HF_TOP, HF_BLOCK,
               (Rule("logit_scale", ("logit_scale",)), Rule("logit_bias", ("logit_bias",)),
                Rule("proj.weight", ("text_projection.weight",))),  # CLIPModel's projection (no bias)
               scope=r"^(text_model\.|text_projection)"),
)


@dataclass
class TextTower:
    """A checkpoint's text tower in core names, its architecture, how prompts are tokenised, and why."""

    spec: str
    layout: str  # the TextLayout's name
    library: str  # open_clip or transformers
    config: TextConfig
    state_dict: "dict[str, Tensor]"
    tokenizer: Tokenizer
    notes: list[str] = field(default_factory=list)


def text_layout(keys: Mapping[str, object], spec: str) -> TextLayout:
    """The layout whose marker key the checkpoint has, else the one-line error saying it has no text tower."""
    for layout in TEXT_LAYOUTS:
        if layout.root + layout.marker in keys and (
                layout.root or f"{layout.block_prefix.format(i=0)}ln_1.weight" in keys):
            return layout
    raise VitcliError(spec, NO_TEXT)


def map_text(tensors: "Mapping[str, Tensor]", layout: TextLayout,
             spec: str = "text tower") -> "tuple[dict[str, Tensor], int]":
    """The layout's tensors in core names, and the depth (blocks 0, 1, … present without a gap); a key of the
    tower that no rule takes (a part vitcli does not build) is one VitcliError on `spec`."""
    t = _Taker(tensors)
    for rule in layout.top:
        if rule.core not in t.out:
            t.take(rule.core, rule, layout.root)
    depth = 0
    while any(k.startswith(layout.root + layout.block_prefix.format(i=depth)) for k in tensors):
        for rule in layout.block:
            t.take(f"blocks.{depth}.{rule.core}", rule, layout.root + layout.block_prefix.format(i=depth))
        depth += 1
    for rule in layout.outside:
        if rule.core not in t.out:
            t.take(rule.core, rule, "")
    if t.problems:
        raise VitcliError(spec, "its text tower: " + "; ".join(t.problems))
    unused = sorted(k for k in tensors
                    if k not in t.used and re.search(layout.scope, k) and not re.search(layout.ignore, k))
    if unused:  # e.g. CoCa's cls_emb, a text tower with parts vitcli does not build
        raise VitcliError(spec, f"its text tower has a part vitcli cannot build ({len(unused)} keys: "
                          f"{', '.join(unused[:6])})")
    return t.out, depth


Why = tuple[object, str]


@dataclass(frozen=True)
class TextFacts:
    """What shapes cannot show, each with why: from the config files, else the layout's defaults."""

    heads: Why
    activation: Why
    eps: Why
    causal: Why
    pooling: Why
    eos_id: int = 49407
    pad_mask: bool = False
    clean: str = "none"  # open_clip's clean step
    tokenizer_order: tuple[str, ...] = TOKENIZER_FILES
    siglip2: bool = False  # transformers' Siglip2Tokenizer: lower case, padded on the left unless configured
    bundled_bpe: bool = False  # an open_clip repository using open_clip's own BPE file (no hf_tokenizer_name)


def _open_clip_facts(configs: Mapping[str, dict], all_keys: Mapping[str, object], dim: int, name: str,
                     torchscript: bool = False) -> TextFacts:
    """open_clip_config.json's text_cfg (CLIPTextCfg's defaults when absent); OpenAI files (TorchScript archives,
    or state dicts with OpenAI's extra entries): QuickGELU."""
    model = configs.get("open_clip_config.json", {}).get("model_cfg", {})
    cfg = model.get("text_cfg", {}) if isinstance(model, dict) else {}
    cfg = cfg if isinstance(cfg, dict) else {}
    where = "open_clip_config.json text_cfg"
    openai = torchscript or any(k in all_keys for k in ("input_resolution", "context_length", "vocab_size"))
    if model.get("quick_gelu") or openai or "quickgelu" in name.lower():
        activation: Why = ("quick_gelu", "QuickGELU (OpenAI weights, or quick_gelu in the config / model name)")
    elif (cfg.get("act_kwargs") or {}).get("approximate") == "tanh":
        activation = ("gelu_tanh", f"tanh GELU ({where} act_kwargs)")
    else:
        activation = ("gelu", "exact GELU (open_clip's default)")
    heads = (int(cfg["heads"]), f"{where} heads") if isinstance(cfg.get("heads"), int) else \
        (max(dim // 64, 1), "D / 64 (CLIP's build_model rule)")
    eps_cfg = (cfg.get("norm_kwargs") or {}).get("eps")
    eps = (float(eps_cfg), f"{where} norm_kwargs") if isinstance(eps_cfg, (int, float)) else (1e-5, "open_clip's 1e-5")
    causal = (not cfg.get("no_causal_mask", False), f"{where} no_causal_mask" if "no_causal_mask" in cfg else
              "causal (open_clip's default)")
    pool = cfg.get("pool_type", "argmax")
    pooling = (pool if pool in ("argmax", "eos", "last", "first") else "argmax",
               f"{where} pool_type" if "pool_type" in cfg else "argmax: the end-of-text token (open_clip's default)")
    kwargs = cfg.get("tokenizer_kwargs") or {}
    hf = bool(cfg.get("hf_tokenizer_name"))
    clean = kwargs.get("clean", "whitespace" if hf else "lower")
    order = ("tokenizer.json", "spiece.model", "merges.txt", "bpe_simple_vocab_16e6.txt.gz") if hf else \
        ("bpe_simple_vocab_16e6.txt.gz", "merges.txt", "tokenizer.json", "spiece.model")
    return TextFacts(heads, activation, eps, causal, pooling, int(cfg.get("eos_id", 2)), False,
                     clean if clean in ("lower", "whitespace", "canonicalize") else "whitespace", order,
                     bundled_bpe=bool(model) and not hf)


def _hf_facts(configs: Mapping[str, dict], dim: int, siglip: bool) -> TextFacts:
    """config.json's text_config (transformers' class defaults when absent): CLIP causal, eos pooling,
    QuickGELU; SigLIP bidirectional, last token, tanh GELU, eps 1e-6."""
    cfg = configs.get("config.json", {}).get("text_config", {})
    cfg = cfg if isinstance(cfg, dict) else {}
    where = "config.json text_config"
    heads = (int(cfg["num_attention_heads"]), f"{where} num_attention_heads") \
        if isinstance(cfg.get("num_attention_heads"), int) else (max(dim // 64, 1), "D / 64 (no config.json)")
    act = cfg.get("hidden_act") or ("gelu_pytorch_tanh" if siglip else "quick_gelu")
    names = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "quick_gelu": "quick_gelu", "gelu": "gelu"}
    if act not in names:
        raise VitcliError("config.json", f"text_config hidden_act {act!r:.40} is not one vitcli builds "
                          f"({', '.join(names)})")
    activation = (names[act], f"{where} hidden_act" if cfg.get("hidden_act") else "the config class's default")
    eps_cfg = cfg.get("layer_norm_eps")
    eps = (float(eps_cfg), f"{where} layer_norm_eps") if isinstance(eps_cfg, (int, float)) else \
        (1e-6 if siglip else 1e-5, "the config class's default")
    if siglip:
        return TextFacts(heads, activation, eps, (False, "bidirectional (SigLIP)"),
                         ("last", "the last token (SigLIP)"), pad_mask=True,
                         tokenizer_order=("tokenizer.json", "spiece.model"),
                         siglip2=configs.get("config.json", {}).get("model_type") == "siglip2")
    eos = cfg.get("eos_token_id", 49407)
    eos = eos if isinstance(eos, int) else 49407
    pooling: Why = ("argmax", "argmax (config eos_token_id 2: transformers' legacy rule)") if eos == 2 else \
        ("eos", f"the first eos_token_id {eos}")
    return TextFacts(heads, activation, eps, (True, "causal (CLIP)"), pooling, eos, True,
                     tokenizer_order=("tokenizer.json", "merges.txt"))


def text_config(state: "Mapping[str, Tensor]", depth: int, facts: TextFacts) -> TextConfig:
    """The architecture: sizes from the tensor shapes, the rest from `facts`."""
    vocab, dim = (int(s) for s in state["token_embedding.weight"].shape)
    proj = state.get("proj.weight")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    return TextConfig(vocab_size=vocab, context_length=int(state["pos_embed"].shape[0]), dim=dim, depth=depth,
                      heads=int(facts.heads[0]),  # type: ignore[call-overload]
                      mlp_dim=int(fc1.shape[0]) if fc1 is not None else 4 * dim,
                      activation=facts.activation[0], eps=float(facts.eps[0]),  # type: ignore[arg-type]
                      causal=bool(facts.causal[0]), pad_mask=facts.pad_mask,
                      pooling=facts.pooling[0], eos_id=facts.eos_id,  # type: ignore[arg-type]
                      embed_dim=int(proj.shape[0]) if proj is not None else 0, proj_bias="proj.bias" in state,
                      layer_scale="blocks.0.ls1.gamma" in state, logit_bias="logit_bias" in state)


def load_text_tower(spec: str, tokenizer: str | None = None, online: bool = False) -> TextTower:
    """Read the checkpoint `spec` again for its text tower (the image model keeps none of it) and find its
    tokenizer: `tokenizer` (a file or folder) when given, else the checkpoint's folder."""
    from vitcli.checkpoints.hub import is_hub_spec, resolve
    from vitcli.checkpoints.read import read_checkpoint, strip_wrappers

    raw = read_checkpoint(resolve(spec, online).path if is_hub_spec(spec) else spec)
    tensors, _ = strip_wrappers(raw.tensors)
    layout = text_layout(tensors, spec)
    state, depth = map_text(tensors, layout, spec)
    for key in ("token_embedding.weight", "pos_embed", "norm.weight"):
        if key not in state:
            raise VitcliError(spec, f"its text tower ({layout.name}) lacks {key}: " + NO_TEXT)
    state.setdefault("logit_scale", _scalar(0.0))
    for key in ("logit_scale", "logit_bias"):  # transformers keeps them as (1,), open_clip as ()
        if key in state and state[key].numel() == 1:
            state[key] = state[key].reshape(())
    dim = int(state["token_embedding.weight"].shape[1])
    siglip = layout.library == "transformers" and "proj.bias" in state
    facts = _open_clip_facts(raw.configs, tensors, dim, spec, raw.format == "torchscript") \
        if layout.library == "open_clip" else \
        _hf_facts(raw.configs, dim, siglip)
    config = text_config(state, depth, facts)
    tok = _tokenizer(spec, raw.path, tokenizer, facts)
    notes = [f"text tower: {layout.name} layout, {depth} blocks of width {dim}"]
    notes += [f"text {what}: {value} ({why})" for what, (value, why) in
              (("heads", facts.heads), ("activation", facts.activation), ("eps", facts.eps),
               ("mask", ("causal" if facts.causal[0] else "bidirectional", facts.causal[1])),
               ("pooling", facts.pooling))]
    notes.append(f"tokenizer: {tok.kind} {tok.path}"
                 + (f", open_clip clean '{tok.clean}'" if tok.clean != "none" else ""))
    return TextTower(spec, layout.name, layout.library, config, {k: v for k, v in state.items()}, tok, notes)


def _scalar(value: float) -> "Tensor":
    import torch

    return torch.tensor(value)


def _tokenizer(spec: str, weights: str, given: str | None, facts: TextFacts) -> Tokenizer:
    """The tokenizer, with the rules of the class transformers would load it as (SigLIP 2's tokenizer.json:
    Siglip2Tokenizer lower-cases, and pads on the left unless tokenizer_config.json says padding_side)."""
    tok = _tokenizer_file(spec, weights, given, facts)
    if facts.siglip2 and tok.kind == "tokenizer.json":
        side = tokenizer_settings(Path(tok.path).parent).get("padding_side", "left")
        tok.lower, tok.pad_left = True, side == "left"
    return tok


def _tokenizer_file(spec: str, weights: str, given: str | None, facts: TextFacts) -> Tokenizer:
    """`given`, else the first tokenizer file beside the weights in the library's order, else (an open_clip
    repository whose config names no Hugging Face tokenizer: open_clip's own default) the BPE file of an installed
    open_clip; else one line naming --tokenizer."""
    if given is not None:
        return load_tokenizer(given, facts.clean, facts.tokenizer_order)
    folder = Path(weights).parent if Path(weights).is_file() else Path(weights)
    order = facts.tokenizer_order
    if tokenizer_settings(folder).get("tokenizer_class") == "SiglipTokenizer":  # the class transformers would load
        order = ("spiece.model", *(n for n in order if n != "spiece.model"))
    found = find_tokenizer_file(folder, order)
    bundled = bundled_bpe()
    if found is None and facts.bundled_bpe and bundled is not None:
        found = bundled
    if found is None:
        where = f"CLIP's BPE file, as open_clip ships it: {bundled}" if bundled else \
            "open_clip ships CLIP's bpe_simple_vocab_16e6.txt.gz in its package folder"
        raise VitcliError(spec, "has no tokenizer beside it (tokenizer.json, spiece.model, merges.txt or "
                          f"bpe_simple_vocab_16e6.txt.gz): pass --tokenizer PATH ({where})")
    return load_tokenizer(found, facts.clean, facts.tokenizer_order)


def bundled_bpe() -> Path | None:
    """CLIP's BPE file in an installed open_clip's package folder, found without importing open_clip."""
    from importlib.util import find_spec

    spec = find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return next((Path(f) / "bpe_simple_vocab_16e6.txt.gz" for f in folders
                 if (Path(f) / "bpe_simple_vocab_16e6.txt.gz").is_file()), None)


def build_text_tower(tower: TextTower, device: "str | torch.device" = "cpu",
                     dtype: "torch.dtype | None" = None) -> "TextTransformer":
    """The core TextTransformer of a loaded text tower, weights in place, eval mode; missing or misshapen
    keys are one VitcliError."""
    import torch

    from vitcli.core.text import TextTransformer

    with torch.device("meta"):
        model = TextTransformer(tower.config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in tower.state_dict]
    wrong = [f"{k} is {tuple(v.shape)}, needs {expected[k]}" for k, v in tower.state_dict.items()
             if k in expected and tuple(v.shape) != expected[k]]
    extra = [k for k in tower.state_dict if k not in expected]
    if missing or wrong or extra:
        problems = [f"missing {', '.join(missing[:6])}" if missing else "", f"wrong shape: {'; '.join(wrong[:4])}"
                    if wrong else "", f"not used: {', '.join(extra[:6])}" if extra else ""]
        raise VitcliError(tower.spec, "its text tower does not fit: " + "; ".join(p for p in problems if p))
    dtype = torch.float32 if dtype is None else dtype
    state = {k: v.to(device=device, dtype=dtype) for k, v in tower.state_dict.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()


__all__ = ["NO_TEXT", "TEXT_LAYOUTS", "TextLayout", "TextTower", "build_text_tower", "load_text_tower", "map_text",
           "text_config", "text_layout"]
