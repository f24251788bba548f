"""`Model.attend`: self-attention of chosen layers, heads and queries, with its analyses and pictures.

A = softmax(Q·Kᵀ/√d_k) per layer and head; the weights are (layers, heads, queries, tokens),
tokens being the prefix tokens then the patches row by row on the input's true grid. Options that
take a path write there (and compute); `True` computes without writing.
"""

from typing import TYPE_CHECKING

from vitcli.api.base import ModelBase
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import AttendResult
from vitcli.api.selection import Selection
from vitcli.api.values import Layers, Query
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.attend_report import Asked
    from vitcli.api.runs import BatchSpec, Progress
    from vitcli.core.config import ViTConfig
    from vitcli.core.inspect import RolloutSpec


PathOrFlag = str | bool | None


def _rollout_spec(rollout: PathOrFlag, fusion: str, ratio: float, scope: str, start: int) -> "RolloutSpec | None":
    from vitcli.core.inspect import RolloutSpec

    return RolloutSpec(fusion, ratio, scope, start) if rollout else None  # type: ignore[arg-type]


POOLED_NAMES = {"probe": "attention-pool probe", "mean": "patch rows' mean"}


def _check(sel: Selection, config: "ViTConfig", overlay: str | None, rollout: PathOrFlag, masks: PathOrFlag,
           fusion: str, scope: str, cosine: PathOrFlag = None, save_qkv: PathOrFlag = None) -> None:
    """Refuse combinations that cannot give a picture or a mask, before the forward pass."""
    if (overlay or rollout) and not sel.one_row:
        raise VitcliError("--query",
                          "--overlay and --rollout draw one query's map: choose cls, probe, mean, a token or R,C")
    for option, value in (("--cosine", cosine), ("--save-qkv", save_qkv)):
        if value and sel.pooled:
            raise VitcliError(option, f"works on token queries, and the {POOLED_NAMES[sel.pooled]} is no token: "
                              "choose cls, a token, R,C or all with --query")
    if masks and not config.class_token and not sel.probe:
        raise VitcliError("--masks", "DINO masks are the class token's maps, and this model has no class token")
    if fusion not in ("mean", "max", "min"):
        raise VitcliError("--rollout-fusion", f"'{fusion}' is not mean, max or min")
    if scope not in ("row", "matrix"):
        raise VitcliError("--discard-scope", f"'{scope}' is not row or matrix")


def _settle(depth: int, rollout: PathOrFlag, masks: PathOrFlag, threshold: float | None,
            discard_ratio: float | None, start_layer: int | None) -> tuple[float, float, int]:
    """Range-check the analyses' numbers whether or not they are used, refuse one given that no
    asked analysis uses; (threshold, discard_ratio, start_layer) with the defaults filled in."""
    from vitcli.api.ranges import check_ranges, refuse_unused

    check_ranges(start_layer=start_layer)
    if start_layer is not None and start_layer >= depth:
        raise VitcliError("--start-layer", f"start layer {start_layer} is outside 0..{depth - 1}")
    if threshold is not None and not 0 < threshold <= 1:
        raise VitcliError("--threshold", f"{threshold} is outside (0, 1]")
    if discard_ratio is not None and not 0 <= discard_ratio < 1:
        raise VitcliError("--discard-ratio", f"{discard_ratio} is outside [0, 1)")
    if not rollout:
        refuse_unused("--rollout", {"--start-layer": start_layer, "--discard-ratio": discard_ratio})
    if not masks:
        refuse_unused("--masks", {"--threshold": threshold})
    return (0.6 if threshold is None else threshold), discard_ratio or 0.0, start_layer or 0


class AttendMixin(ModelBase):
    """`attend` for `Model`."""

    @image_keywords("images")
    def attend(self, images: "ImageSource", *, layer: Layers = "-1", head: Layers = "all", query: Query = None,
               normalize: str | None = None, output: str | None = None, rollout: PathOrFlag = None,
               rollout_fusion: str = "mean", discard_ratio: float | None = None, discard_scope: str = "matrix",
               start_layer: int | None = None, distance: PathOrFlag = None, plot_distance: str | None = None,
               renorm: bool = False, masks: PathOrFlag = None, threshold: float | None = None,
               cosine: PathOrFlag = None,
               save_qkv: PathOrFlag = None, overlay: str | None = None, per_head: bool = False,
               batch: "BatchSpec | None" = None, keep: bool = True, progress: "Progress | None" = None) -> AttendResult:
        """Attention of one image with every analysis asked, or of many images (weights streamed to
        `output`, mean distance averaged over them). `start_layer` and `discard_ratio` (default 0)
        work with `rollout`, `threshold` (default 0.6) with `masks`; given without them, a UsageError."""
        import torch

        from vitcli.api.attend_report import distance_table, many_document, single_result
        from vitcli.api.images import as_images
        from vitcli.api.runs import BatchSpec, run_model
        from vitcli.core.inspect import AttentionReport, inspect_attention

        threshold, discard_ratio, start_layer = _settle(self.config.depth, rollout, masks, threshold, discard_ratio,
                                                        start_layer)
        images = as_images(images)
        self.check_outputs(images, output=output, rollout=rollout, distance=distance, plot_distance=plot_distance,
                           masks=masks, cosine=cosine, save_qkv=save_qkv, overlay=overlay)
        spec = _rollout_spec(rollout, rollout_fusion, discard_ratio, discard_scope, start_layer)
        if images.many:
            one = [n for n, v in [("--overlay", overlay), ("--rollout", rollout), ("--masks", masks),
                                  ("--cosine", cosine), ("--save-qkv", save_qkv)] if v]
            if one:
                raise VitcliError(one[0], "draws or writes one image's analysis: give one image "
                                  "(several images take -o, --distance, --plot-distance)")
        every = list(range(self.config.depth)) if distance or plot_distance else None
        chosen: dict[str, Selection] = {}
        reports: list[AttentionReport] = []  # one image's
        per_image: list[np.ndarray] = []

        def compute(x: "torch.Tensor") -> "dict[str, np.ndarray]":
            grid = (x.shape[-2] // self.config.patch_size, x.shape[-1] // self.config.patch_size)
            sel = Selection.parse(self.config, grid, layer, head, query)
            _check(sel, self.config, overlay, rollout, masks, rollout_fusion, discard_scope, cosine, save_qkv)
            chosen["selection"] = sel
            with torch.inference_mode():
                report = inspect_attention(self.module, x, sel.layers, sel.heads, sel.queries, every, renorm, spec,
                                           keep_qkv=bool(save_qkv), cosine=bool(cosine), pooled=sel.pooled)
            if not images.many:
                reports.append(report)
            elif every is not None:
                per_image.append(distance_table(report))  # (b, L, H)
            return {"attention": report.weights.numpy()}  # (b, L_sel, H_sel, Q, T)

        def kept(b: int, shape: tuple[int, ...]) -> int:
            """Bytes of attention weights a batch keeps: the selected layers' (b, H, Q, T), the
            rollout's (T, T) per layer, Q, K, V when saved."""
            from vitcli.core.budget import attention_kept_bytes

            c = self.config
            grid = (shape[-2] // c.patch_size, shape[-1] // c.patch_size)
            sel = Selection.parse(c, grid, layer, head, query)
            t = grid[0] * grid[1] + c.num_prefix_tokens
            q = t if sel.queries is None else max(1, len(sel.queries))
            extra = 2 * c.depth * t * t * 4 if rollout or masks else 0
            extra += 3 * c.depth * b * t * c.dim * 4 if save_qkv or cosine else 0
            return attention_kept_bytes(b, c.heads, q, t, len(sel.layers)) + extra

        run = run_model(self, images, compute, main="attention", normalize=normalize, batch=batch or BatchSpec(),
                        output=output if images.many else None, keep=keep and images.many, progress=progress,
                        kept=kept, kept_source="--query" if str(query).strip().lower() == "all" else "--layer")
        outputs: Asked = {"output": output, "rollout": rollout, "distance": distance, "plot_distance": plot_distance,
                          "masks": masks, "threshold": threshold, "cosine": cosine, "save_qkv": save_qkv,
                          "overlay": overlay, "per_head": per_head}
        if images.many:
            return many_document(self, run, chosen.get("selection"), per_image, outputs)
        return single_result(self, run, chosen["selection"], reports[0], spec, outputs)
