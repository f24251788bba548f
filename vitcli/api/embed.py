"""`Model.embed`: patches → projection → class token → + positions = Z0 → encoder → embedding."""

from typing import TYPE_CHECKING, Literal

from vitcli.api.base import ModelBase
from vitcli.api.documents import EmbedBatchDoc, EmbedDoc
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import EmbedResult
from vitcli.api.values import choice
from vitcli.api.values import layers as layer_list
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.dataset import DatasetSpec
    from vitcli.api.images import FittedImage
    from vitcli.api.runs import BatchSpec, ModelRun, ModuleCompute, Progress
    from vitcli.core.capture import Capture
    from vitcli.core.encoder import VisionTransformer

Stage = Literal["patches", "tokens", "input", "output", "pooled", "projected", "layers"]
Impl = Literal["conv", "linear"]
STAGES: tuple[str, ...] = ("patches", "tokens", "input", "output", "pooled", "projected", "layers")
# name in arrays and JSON → ViTOutput field; `with_cls` is shown but cannot be written alone
FIELDS = {"patches": "patches", "tokens": "tokens", "with_cls": "with_prefix", "input": "z0", "output": "output",
          "pooled": "pooled", "projected": "logits"}




class EmbedCompute:
    """(b, 3, H, W) → {stage: (b, ...) float32 numpy}: a plain object, so it can be sent to Ray actors."""

    def __init__(self, module: "VisionTransformer", capture: "Capture", impl: str, stages: set[str]) -> None:
        self.module, self.capture, self.impl, self.stages = module, capture, impl, stages

    def __call__(self, x: "torch.Tensor") -> "dict[str, np.ndarray]":
        import torch

        with torch.inference_mode():
            out = self.module(x, capture=self.capture, impl=self.impl)
        return {s: getattr(out, FIELDS[s]).float().cpu().numpy() for s in FIELDS if s in self.stages}


def _capture(stages: set[str], cls_pooling: bool):
    """The cheapest forward pass that gives these stages."""
    from vitcli.core.capture import Capture

    inputs = bool(stages & {"patches", "tokens", "with_cls", "input"})
    final: Literal["tokens", "pooled", "none"] = (
        "tokens" if "output" in stages else ("pooled" if stages & {"pooled", "projected"} else "none"))
    return Capture(inputs=inputs, final=final)


def _grid_of(fitted: "FittedImage", patch_size: int) -> tuple[int, int]:
    """(rows, cols) of a fitted image's patch grid."""
    return int(fitted.pixels.shape[0]) // patch_size, int(fitted.pixels.shape[1]) // patch_size


class EmbedMixin(ModelBase):
    """`embed` for `Model`."""

    @image_keywords("images", tokens=choice(("cls", "mean", "pooled")),
                    layers=lambda name, v: None if v is None else layer_list(name, v))
    def embed(self, images: "ImageSource", *, stage: Stage = "input", impl: Impl = "conv", posenc: str | None = None,
              normalize: str | None = None, output: str | None = None, output_dir: str | None = None,
              batch: "BatchSpec | None" = None, keep: bool = True, progress: "Progress | None" = None,
              dataset: "DatasetSpec | None" = None, layers: str | None = None,
              tokens: str | None = None) -> EmbedResult:
        """Every stage of one image (arrays without a batch axis), or one stage of many images
        ((B, ...) rows, streamed to `output` / `output_dir` when given). `posenc` is a preset's choice
        at load time; here it must match the model. `dataset` (a DatasetSpec; also implied by
        -o FILE.parquet) writes Parquet or resumable shards, locally or on Ray. stage="layers" writes
        every chosen block's feature (`layers`, default all; `tokens` cls | mean | pooled): (L, D) an image,
        in Parquet one `layer_<block>` column per layer, what `compare --features` reads."""
        from dataclasses import replace

        from vitcli.api.dataset import DatasetSpec, run_dataset
        from vitcli.api.images import as_images
        from vitcli.api.runs import BatchSpec, run_model
        from vitcli.stats import tensor_stats

        images = as_images(images)
        dataset = dataset or DatasetSpec()
        if dataset.wanted(output):
            images = replace(images, many=True)
        else:
            dataset.check_unused(sharded=False)
        self.check_outputs(images, output=output, output_dir=output_dir)
        if stage not in STAGES:
            raise VitcliError("--stage", f"'{stage}' is not one of {', '.join(STAGES)}")
        if stage == "pooled" and self.config.pooling == "none":
            raise VitcliError("--stage", "this model has no pooled stage (pooling is none)")
        if stage == "projected" and not self.projects:
            raise VitcliError("--stage",
                              "projected is the image embedding in a CLIP-style joint image-text space; this "
                              "model has no such projection (use pooled)")
        if posenc is not None and posenc != self.config.posenc:
            raise VitcliError("--posenc", f"'{posenc}' is not this model's position encoding ({self.config.posenc}); a "
                              "preset's is chosen when it is loaded (load_model's posenc, the shell's --posenc)")
        if impl not in ("conv", "linear"):
            raise VitcliError("--impl", f"'{impl}' is not conv or linear")
        stages: set[str] = set(FIELDS) if not images.many else {stage}
        if self.config.pooling == "none":
            stages.discard("pooled")
        if not self.projects:
            stages.discard("projected")
        capture = _capture(stages, self.config.pooling == "cls")

        self.resolve_grid(images)  # a table whose grid the weights do not show: before the model is built
        compute: ModuleCompute = EmbedCompute(self.module, capture, impl, stages)
        describe: dict[str, str | list[int]] = {"impl": impl}
        if stage == "layers" or layers is not None or tokens is not None:
            compute, describe = self._layer_compute(stage, layers, tokens)
        if dataset.wanted(output):
            run = run_dataset(self, images, compute, main=stage, normalize=normalize, batch=batch or BatchSpec(),
                              output=output, output_dir=output_dir, dataset=dataset, progress=progress,
                              describe=describe)
            return self._embed_many(run, stage, impl, output, output_dir)
        run = run_model(self, images, compute, main=stage, normalize=normalize, batch=batch or BatchSpec(),
                        output=output, output_dir=output_dir, keep=keep, progress=progress)
        if run.many:
            return self._embed_many(run, stage, impl, output, output_dir)
        arrays = {s: a[0] for s, a in run.arrays.items()}  # (L, D) for stage layers
        if output:
            from vitcli.io.arrays import save_npy

            save_npy(output, arrays[stage])
        fitted = run.fitted[0]
        grid = _grid_of(fitted, self.config.patch_size)
        doc: EmbedDoc = {**self._single_document("embed", fitted, grid, run.normalize), "stage": stage,
                         "impl": impl, "tensors": {s: tensor_stats(a) for s, a in arrays.items()},
                         "outputs": {"array": output}}
        return EmbedResult(stage, arrays, doc, fitted, list(self.warnings))

    def _layer_compute(self, stage: str, layers: str | None,
                       tokens: str | None) -> "tuple[ModuleCompute, dict[str, str | list[int]]]":
        """stage="layers": every chosen block's tokens from one forward pass, and what the files say about them."""
        from vitcli.api.layers import LayerCompute, choose_layers, choose_tokens
        from vitcli.errors import UsageError

        if stage != "layers":
            raise UsageError("--layers" if layers is not None else "--tokens", "works with --stage layers")
        chosen, picked = choose_layers(layers, self.config.depth), choose_tokens(tokens, [self])
        return LayerCompute(self, chosen, picked), {"layers": chosen, "tokens": picked}

    def _embed_many(self, run: "ModelRun", stage: str, impl: str, output: str | None,
                    output_dir: str | None) -> EmbedResult:
        report = run.report
        grid = report.first_grid
        doc: EmbedBatchDoc = {
            "command": "embed", **report.document(), "stage": stage, "impl": impl, "normalize": run.normalize,
            "patch_size": self.config.patch_size, "model": self.document(grid),
            "tensors": {stage: report.stats[stage].document()} if stage in report.stats else {}}
        return EmbedResult(stage, run.arrays, doc, None, list(self.warnings))
