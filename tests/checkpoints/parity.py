"""Shared parity helpers: random peer weights that show mapping errors, peer attention, comparisons.

Peers' own initialisations hide mistakes (zero biases, unit LayerNorms, LayerScale at 1e-5: a
swapped bias or a dropped LayerScale would still agree), so every peer model is re-drawn with
`scramble` before its weights are saved.
"""

import torch
from torch import Tensor, nn

from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture

TOL = 1e-4


def images(b: int, h: int, w: int, seed: int = 0) -> Tensor:
    """Normalised-looking (B, 3, H, W) float32 pixels."""
    return (torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) - 0.45) / 0.225


@torch.no_grad()
def scramble(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter redrawn: matrices N(0, 1/fan_in), norms 1 + N(0, 0.2²), other vectors N(0, 0.2²)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if p.dim() >= 3 and p.shape[0] == 1:  # tokens and position tables (1, T, D)
            value = r * p.shape[-1] ** -0.5
        elif p.dim() >= 2:  # linear / conv weights: fan-in scaling
            value = r * p[0].numel() ** -0.5
        elif name.endswith("weight") or name.endswith("gamma") or name.endswith("lambda1"):
            value = 1 + 0.2 * r
        elif p.dim() == 1 and ("class_embedding" in name):
            value = r * p.shape[0] ** -0.5
        else:
            value = 0.2 * r
        p.copy_(value.to(p.dtype))
    return model.eval()


def core_run(path, x: Tensor, **load_kw):
    """Load with vitcli, build the core model, run with every layer's attention."""
    loaded = load_checkpoint(path, **load_kw)
    model = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = model(x, Capture(attention=range(loaded.config.depth)))
    return loaded, out


def diff(a: Tensor, b: Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


def check(label: str, pairs: dict[str, tuple[Tensor, Tensor]], core_attn: dict[int, Tensor] | list[Tensor],
          peer_attn: list[Tensor], tol: float = TOL) -> dict[str, float]:
    """Max abs difference of each named pair and of all attention layers (ViTOutput.attentions, layer
    → weights, in depth order); all must be ≤ tol."""
    core_attn = list(core_attn.values()) if isinstance(core_attn, dict) else core_attn
    assert len(core_attn) == len(peer_attn) > 0, (len(core_attn), len(peer_attn))
    result = {name: diff(a, b) for name, (a, b) in pairs.items()}
    result["attention"] = max(diff(a, b) for a, b in zip(core_attn, peer_attn))
    print(f"\nparity {label}: " + ", ".join(f"{k} {v:.2e}" for k, v in result.items()))
    bad = {k: v for k, v in result.items() if not v <= tol}
    assert not bad, f"{label}: {bad}"
    return result


class TimmAttention:
    """Every block's attention weights from a timm ViT: fused path off, softmax output hooked."""

    def __init__(self, model: nn.Module) -> None:
        self.weights: list[Tensor] = []
        for block in model.blocks:
            block.attn.fused_attn = False
            block.attn.attn_drop.register_forward_hook(lambda mod, inp, out: self.weights.append(inp[0].detach()))


class MHAAttention:
    """Weights of nn.MultiheadAttention modules that their owners call with need_weights=False.

    The query input is recorded by a pre-hook and the weights recomputed by the same module with
    need_weights=True, average_attn_weights=False, i.e. torch's own attention maths.
    """

    def __init__(self, modules: list[nn.MultiheadAttention]) -> None:
        self.inputs: list[tuple[nn.MultiheadAttention, Tensor]] = []
        self.recording = True
        for mha in modules:
            mha.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, mod, args, kwargs):
        if not self.recording:
            return
        query = args[0] if args else kwargs["query"]
        self.inputs.append((mod, query.detach()))

    @torch.no_grad()
    def weights(self) -> list[Tensor]:
        out, self.recording = [], False
        for mod, x in self.inputs:
            if not mod.batch_first:
                x = x.transpose(0, 1)
            was = mod.batch_first
            mod.batch_first = True
            _, w = mod(x, x, x, need_weights=True, average_attn_weights=False)
            mod.batch_first = was
            out.append(w)
        self.recording = True
        return out
