"""`Model`'s memory checks: the weights and a forward pass against the limit, before anything is allocated.

The estimate itself lives in `vitcli.core.budget`; this names the option that went over it (the
model's size, --batch-size, --query / --layer for kept attention, --method for explain's T×T
products, --patch-size, --size). `explain` passes `backward` (its method, and whether it
discards): its gradient pass is estimated by `backward_bytes` instead of `forward_bytes`.
"""

from typing import TYPE_CHECKING

from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    from vitcli.api.base import ModelSpec
    from vitcli.checkpoints.load import Loaded
    from vitcli.core.config import ViTConfig
    from vitcli.core.encoder import VisionTransformer


class MemoryMixin:
    """Mixed into `Model`: uses its `config`, `spec` (dtype, max_memory), `checkpoint`, `_module`, `preset_base`."""

    config: "ViTConfig"
    spec: "ModelSpec"
    checkpoint: "Loaded | None"
    _module: "VisionTransformer | None"
    preset_base: "ViTConfig | None"

    def memory_limit(self) -> int:
        from vitcli.core.budget import memory_limit

        with option_errors("--max-memory"):
            return memory_limit(self.spec.max_memory)

    def check_memory(self, batch: int = 0, size: tuple[int, int] | None = None, kept: int = 0,
                     source: str | None = None, kept_source: str | None = None,
                     backward: tuple[str, bool] | None = None) -> None:
        """The one-line error naming the option over the limit when the weights (random ones: a
        checkpoint's are mapped from its file), plus one forward pass of `batch` images of `size`
        and `kept` bytes of captures (or explain's gradient pass: `backward` = (method, discard)),
        would need more memory than the limit. The option named: the model's size, else --batch-size
        when one image would fit, else `kept_source` when the captures are most of it, else --method
        when grad-rollout would fit, else `source` (an image's path at its native size) or --size."""
        from vitcli.core.budget import over, weight_bytes

        limit, dtype = self.memory_limit(), self.spec.dtype
        weights = weight_bytes(self.config, dtype) if self.checkpoint is None and self._module is None else 0
        c = self.config
        problem = over(weights, limit, f"a model of {c.depth} blocks of width {c.dim} (MLP {c.mlp_dim}) in {dtype}")
        if problem:
            raise VitcliError(self._blame_weights(limit), problem, needs="max_memory")
        if not batch or size is None:
            return
        run = self._pass_bytes(c, batch, size, kept, backward)
        kind = f"a gradient pass (explain {backward[0]})" if backward else "a forward pass"
        what = f"{kind} of {batch} image{'s' if batch > 1 else ''} of {size[0]}×{size[1]} " \
               f"({(size[0] // c.patch_size) * (size[1] // c.patch_size) + c.num_prefix_tokens} tokens)"
        problem = over(weights + run, limit, what)
        if problem:
            alone = weights + self._pass_bytes(c, 1, size, kept // batch, backward)
            cheaper = backward and backward[0] != "grad-rollout" and \
                weights + self._pass_bytes(c, batch, size, kept, ("grad-rollout", False)) <= limit
            blame = "--batch-size" if batch > 1 and alone <= limit else \
                kept_source if kept_source and 2 * kept > weights + run else "--method" if cheaper else \
                "--patch-size" if self._patch_is_why(batch, size, kept, limit - weights,
                                                     backward) else source or "--size"
            raise VitcliError(blame, problem, needs="max_memory")

    def _pass_bytes(self, c: "ViTConfig", batch: int, size: tuple[int, int], kept: int,
                    backward: tuple[str, bool] | None) -> int:
        """A forward pass's bytes with `kept` captures, or explain's gradient pass (`backward`)."""
        from vitcli.core.budget import backward_bytes, forward_bytes

        if backward:
            return backward_bytes(c, batch, size, self.spec.dtype, *backward) + kept
        return forward_bytes(c, batch, size, self.spec.dtype, kept)

    def _patch_is_why(self, batch: int, size: tuple[int, int], kept: int, room: int,
                      backward: tuple[str, bool] | None = None) -> bool:
        """Whether the preset's own patch size would have kept the pass under the limit."""
        base = self.preset_base
        if base is None or base.patch_size == self.config.patch_size or size[0] % base.patch_size or \
                size[1] % base.patch_size:
            return False
        return self._pass_bytes(self.config.with_changes(patch_size=base.patch_size), batch, size, kept,
                                backward) <= room

    def _blame_weights(self, limit: int) -> str:
        """The size option that most raised the weights over the preset's (else --model)."""
        from vitcli.core.budget import weight_bytes

        base = self.preset_base
        if base is None:
            return "--model"
        fields = {"--depth": "depth", "--dim": "dim", "--mlp-ratio": "mlp_dim", "--patch-size": "patch_size"}
        gains = {}
        for option, name in fields.items():
            if getattr(self.config, name) != getattr(base, name):
                undone = {name: getattr(base, name)}
                if name == "dim":
                    undone["mlp_dim"] = round(self.config.mlp_dim * base.dim / self.config.dim)
                gains[option] = weight_bytes(self.config, self.spec.dtype) - \
                    weight_bytes(self.config.with_changes(**undone), self.spec.dtype)
        return max(gains, key=lambda option: gains[option]) if gains else "--model"
