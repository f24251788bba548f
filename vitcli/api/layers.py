"""Layer features of a model over images: every chosen block's tokens from one forward pass per batch.

`LayerCompute` is the compute step `run_model` / `run_batches` call ((b, 3, H, W) → each layer's rows);
`choose_layers` and `choose_tokens` parse the options once for compare, probe and `embed --stage layers`.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.base import ModelBase


def choose_layers(text: str | None, depth: int, option: str = "--layers") -> list[int]:
    """'all' (default), '-1', '0,3,6', '2:5' → sorted block indices, else one error naming `option`."""
    from vitcli.core.select import parse_layers

    with option_errors(option):
        return parse_layers(text or "all", depth)


def choose_tokens(tokens: str | None, models: "Sequence[ModelBase]", option: str = "--tokens") -> str:
    """The tokens asked for (default: the first model's: cls with a class token, else mean), checked on each model."""
    from vitcli.core.layer_tokens import default_tokens, tokens_problem

    chosen = tokens or default_tokens(models[0].config)
    for i, model in enumerate(models):
        problem = tokens_problem(chosen, model.config)
        if problem:
            who = f" (model {'AB'[i]}: {model.spec.spec})" if len(models) > 1 else ""
            raise VitcliError(option, f"{chosen}{who}: {problem}")
    return chosen


def kept_bytes(model: "ModelBase", layers: Sequence[int]) -> Callable[[int, tuple[int, ...]], int]:
    """`run_model`'s `kept`: the bytes of the captured blocks of a batch, (b, T, D) float32 each."""

    def kept(b: int, shape: tuple[int, ...]) -> int:
        c = model.config
        t = (shape[2] // c.patch_size) * (shape[3] // c.patch_size) + c.num_prefix_tokens
        return b * t * c.dim * 4 * len(layers)

    return kept


class LayerCompute:
    """(b, 3, H, W) → each chosen layer's rows, (b, D) per image or (b, N, D) for patches, from one forward.

    A plain object holding the torch module (not the Model), so it can be sent to Ray actors."""

    def __init__(self, model: "ModelBase", layers: Sequence[int], tokens: str) -> None:
        from vitcli.core.layer_tokens import layer_capture

        self.module, self.config, self.layers, self.tokens = model.module, model.config, list(layers), tokens
        self.capture = layer_capture(self.layers, tokens, model.config.depth)

    def tensors(self, x: "torch.Tensor") -> "list[torch.Tensor]":
        """The layers' rows as torch tensors on the model's device."""
        import torch

        from vitcli.core.layer_tokens import layer_tokens

        with torch.inference_mode():
            out = self.module(x, capture=self.capture)
        return layer_tokens(out.blocks, out.pooled, self.layers, self.tokens, self.config)

    def __call__(self, x: "torch.Tensor") -> "dict[str, np.ndarray]":
        """run_model's compute: {"layers": (b, L, D) or (b, L, N, D) float32}."""
        import torch

        return {"layers": torch.stack(self.tensors(x), 1).float().cpu().numpy()}


__all__ = ["LayerCompute", "choose_layers", "choose_tokens", "kept_bytes"]
