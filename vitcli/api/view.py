"""`Model.view`: one self-contained HTML page to explore attention, similarity, positions and norms.

Everything the page draws comes from what the commands compute, in one forward pass per image
(their captures joined): `attend` (every query of the chosen layers, Q and K, rollout, mean
distance of every layer), the `figures similar` features (block output through the final norm),
`figures norms`, and the position table the model adds at the image's grid. Attention is stored
per layer as Q and K in float16 (the page computes softmax rows) when that reproduces every row of
`attend` within `ROW_TOLERANCE`, else as the rows in float16.
With text prompts (CLIP-family checkpoints), each prompt gets a panel: its LeGrad map (`explain`,
method legrad, target text:PROMPT) and its zero-shot score as `classify` computes it.
"""

from typing import TYPE_CHECKING, Literal

import numpy as np
from typing_extensions import NotRequired, TypedDict

from vitcli.api.attend import AttendMixin
from vitcli.api.documents import ModelDoc, OutlierRow, ViewDoc
from vitcli.api.explain import ExplainMixin
from vitcli.api.figures import MAD_K, FiguresMixin
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import ExplainResult, ViewResult
from vitcli.api.values import Layers, prompts
from vitcli.errors import UsageError, VitcliError, option_errors

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from vitcli.api.documents import NormsDoc
    from vitcli.api.images import FittedImage, ImageSpec
    from vitcli.api.results import FigureResult
    from vitcli.core.encoder import ViTOutput
    from vitcli.core.inspect import AttentionReport

    # _view_features: the image, per layer its (T, N') similarities, --to's image and grid, the norms
    Features = tuple[FittedImage, list[np.ndarray], tuple[FittedImage, tuple[int, int]] | None, FigureResult[NormsDoc]]

ROW_TOLERANCE = 5e-4  # largest |row from float16 Q, K − attend's row| accepted before storing rows
SIZE_BUDGET = 12 * 2**20  # the page's size budget (ViT-B/16 at 224, all layers)


# --- what the page reads (vitcli/view/page.js): arrays as typed-array bytes, not a command document -------


class PageArray(TypedDict):
    """An array for the page: float16 or float32 bytes and its shape."""

    dtype: Literal["f16", "f32"]
    shape: list[int]
    data: bytes


class PageAttention(TypedDict):
    """One layer's attention: Q and K (the page computes the rows) or the rows themselves."""

    kind: Literal["qk", "rows"]
    q: NotRequired[PageArray]
    k: NotRequired[PageArray]
    rows: NotRequired[PageArray]


class PageTarget(TypedDict):
    name: str
    grid: list[int]
    image: bytes


PageExplain = TypedDict("PageExplain", {"map": PageArray, "target": str, "class": int | None, "label": str | None})


class PagePanel(TypedDict):
    prompt: str
    map: PageArray
    prob: float
    logit: float


class PageText(TypedDict):
    rule: str
    panels: list[PagePanel]


class PageTab(TypedDict):
    """Everything one image's tab shows."""

    name: str
    grid: list[int]
    image: bytes  # PNG
    attention: list[PageAttention]
    rollout: PageArray
    distance: PageArray
    similarity: list[PageArray]
    norms: PageArray
    norm_thresholds: list[float]
    outliers: list[OutlierRow]
    posenc: PageArray | None
    to: PageTarget | None
    explain: PageExplain | None
    text: PageText | None


class PagePrompts(TypedDict):
    prompts: list[str]
    rule: str


class Page(TypedDict):
    model: ModelDoc
    layers: list[int]
    depth: int
    heads: int
    patch_size: int
    num_prefix: int
    prefix_names: list[str]
    class_token: bool
    scale: float
    tabs: list[PageTab]
    text: PagePrompts | None


def _f16(array: "ArrayLike") -> PageArray:
    """An array as a float16 typed array for the page (shape kept); float32 and float64 are rounded once,
    straight to float16 (the same bits as through float64: float32 widens exactly)."""
    a = np.asarray(array)
    if a.dtype not in (np.float16, np.float32, np.float64):
        a = a.astype(np.float64)
    return {"dtype": "f16", "shape": list(a.shape), "data": a.astype(np.float16, copy=False).tobytes()}


def _f32(array: "ArrayLike") -> PageArray:
    a = np.asarray(array, dtype=np.float32)
    return {"dtype": "f32", "shape": list(a.shape), "data": a.tobytes()}


def _rows_from_half(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """softmax(scale·Q·Kᵀ) from float16 Q, K computed in float64, as the page does: (H, T, T). In torch, on
    the threads the forward pass used: numpy's BLAS would start a second pool whose threads spin on."""
    import torch

    q64, k64 = (torch.from_numpy(np.asarray(a, np.float16)).double() for a in (q, k))  # (H, T, d) each
    s = torch.matmul(q64, k64.transpose(-2, -1))  # (H, T, T)
    s *= scale  # in place from here: one (H, T, T) float64 buffer
    s -= s.amax(-1, keepdim=True)
    s.exp_()
    s /= s.sum(-1, keepdim=True)
    return s.numpy()


def attention_layer(weights: np.ndarray, q: np.ndarray, k: np.ndarray, scale: float) -> tuple[PageAttention, float]:
    """One layer for the page, Q and K when they give back `weights` (H, T, T, float32 or float64), else the
    rows; with the largest error of what the page will compute (in float64)."""
    q, k = np.asarray(q, np.float16), np.asarray(k, np.float16)  # what the page stores, rounded once
    with np.errstate(all="ignore"):
        diff = _rows_from_half(q, k, scale)  # (H, T, T) float64
        diff -= weights  # float32 weights widen exactly
        err = float(np.abs(diff, out=diff).max())
    if np.isfinite(err) and err <= ROW_TOLERANCE:
        return {"kind": "qk", "q": _f16(q), "k": _f16(k)}, err
    rows = _f16(weights)
    err = float(np.abs(weights.astype(np.float16).astype(np.float64) - weights).max())
    return {"kind": "rows", "rows": rows}, err


class ViewMixin(AttendMixin, FiguresMixin, ExplainMixin):
    """`view` for `Model`."""

    @image_keywords("images", "to", text=prompts)
    def view(self, images: "ImageSource", *, output: str, layers: Layers = "all", to: "ImageSource | None" = None,
             explain: bool = False, target: str | int | None = None, text: str | list[str] | None = None,
             normalize: str | None = None) -> ViewResult:
        """Write one HTML page exploring every image (one tab each), the layers `layers` embedded; `text`
        (prompts) adds a panel per prompt: its LeGrad map and zero-shot score (CLIP-family checkpoints)."""
        from vitcli.api.explain import target_form
        from vitcli.api.images import Images, as_images
        from vitcli.core.select import parse_layers, prefix_names
        from vitcli.view.writer import encoded_size, write_page

        if not output:
            raise VitcliError("-o", "give the page's path, e.g. -o report.html")
        if target is not None:
            target = target_form(target)  # its form checked whether or not --explain reads it
        if target is not None and not explain:
            raise UsageError("--target", "chooses what --explain explains: works with --explain")
        images = as_images(images)
        self.check_outputs(images, [to] if isinstance(to, str) else [], output=output)
        if not len(images.items):
            raise VitcliError("IMAGE", "give at least one image")
        with option_errors("--layers"):
            chosen = parse_layers(str(layers), self.config.depth)
        texts = view_prompts(text)
        if texts:
            self.text_tower()  # one line, before any work, without one
        c = self.config
        tabs: list[PageTab] = []
        errors: list[float] = []
        kept = 0
        for i, (item, name) in enumerate(zip(images.items, images.names(), strict=True)):
            one = Images([item], False, images.spec)
            kept += self._check_tab_memory(item, name, images.spec, len(chosen), i, len(images.items), kept)
            tab, err = self._view_tab(one, name, chosen, to, normalize, explain, target)
            tab["text"] = self._view_text(one, texts, normalize) if texts else None
            tabs.append(tab)
            errors.append(err)
        first = tabs[0]["text"]  # the family's rule, the same for every tab
        page: Page = {"model": self.document(), "layers": chosen, "depth": c.depth, "heads": c.heads,
                      "patch_size": c.patch_size, "num_prefix": c.num_prefix_tokens,
                      "prefix_names": prefix_names(c.class_token, c.distilled, c.num_registers),
                      "class_token": c.class_token, "scale": c.head_dim**-0.5, "tabs": tabs,
                      "text": {"prompts": texts, "rule": first["rule"]} if texts and first else None}
        size = write_page(output, page)
        doc: ViewDoc = {"command": "view", "output": output, "size_bytes": size, "size_mb": round(size / 2**20, 2),
               "images": images.names(), "layers": chosen, "to": to if isinstance(to, str) or to is None else "<image>",
               "model": self.document(), "max_map_error": max(errors),
               "storage": [{"image": t["name"],
                            "layers": {str(i): a["kind"] for i, a in zip(chosen, t["attention"], strict=True)}}
                           for t in tabs],
               "estimated_size_bytes": encoded_size(page)}
        if page["text"] is not None:
            panels = [(t["name"], t["text"]["panels"] if t["text"] else []) for t in tabs]
            doc["text"] = {"prompts": texts, "rule": page["text"]["rule"], "method": "legrad",
                           "scores": [{"image": name, "probs": [p["prob"] for p in shown],
                                       "logits": [p["logit"] for p in shown]} for name, shown in panels]}
        warnings = list(self.warnings)
        if size > SIZE_BUDGET:
            warnings.append(f"the page is {size / 2**20:.1f} MB; --layers embeds fewer layers")
        return ViewResult(output, size, doc, warnings)

    def _view_tab(self, image: "ImageSource", name: str, layers: list[int], to: "ImageSource | None",
                  normalize: str | None, explain: bool, target: str | int | None) -> tuple[PageTab, float]:
        """Everything one tab shows, from one pass: attend's weights, Q, K and mean distances, the block outputs
        of similar's features and norms, the norms' attention row; `to` in a pass of its own."""
        from vitcli.api.attend_report import distance_table
        from vitcli.core.analysis import one_thread

        fitted, report, other, norm_name = self._view_pass(image, to, layers, normalize)
        assert report.qkv is not None  # kept: keep_qkv=True
        weights = report.weights[0].numpy()  # (L_sel, H, T, T)
        q, k = (t[0].float().numpy() for t in report.qkv[:2])  # each (L_sel, H, T, d)
        distance = distance_table(report)[0]  # (L, H)
        with one_thread():  # many small steps: rollout, the checks, similarity and norms
            rollout = self._view_rollout(image, weights, layers, normalize)  # (T, T)
            stored, errs = zip(*[attention_layer(weights[i], q[i], k[i], self.config.head_dim**-0.5)
                                 for i in range(len(layers))], strict=True)
            sim = self._view_similarity(report.output, other, layers)
            norms = self._norms_of(fitted[:1], report.output, norm_name, MAD_K, None, 0, None, None)  # no tables
        self._check_finite(name, weights, rollout, distance, norms.array, *sim)
        grid = report.grid
        tab: PageTab = {"name": name, "grid": list(grid), "image": _png(fitted[0].pixels), "attention": list(stored),
               "rollout": _f16(rollout), "distance": _f32(distance), "similarity": [_f16(s) for s in sim],
               "norms": _f32(norms.array), "norm_thresholds": norms.document["thresholds"],
               "outliers": norms.document["outliers"], "posenc": self._view_posenc(grid),
               "to": None if to is None else {"name": str(to), "grid": list(other.grid),
                                              "image": _png(fitted[-1].pixels)},
               "explain": self._view_explain(image, target, normalize) if explain else None, "text": None}
        return tab, max(errs)

    def _view_pass(self, image: "ImageSource", to: "ImageSource | None", layers: list[int],
                   normalize: str | None) -> "tuple[list[FittedImage], AttentionReport, ViTOutput, str]":
        """The image and `to` fitted as the commands fit them; one pass over the image keeping what `attend`
        keeps (every query of `layers`, Q, K, every layer's mean distance) joined with `figures norms`'
        capture (every block's output, its attention row); `to`'s block outputs at `layers` (else the image's
        pass again). (fitted, AttentionReport, the ViTOutput similarity compares with, normalisation)."""
        import torch

        from vitcli.api.figures import _as_list, _norms_capture
        from vitcli.core.capture import Capture
        from vitcli.core.inspect import inspect_attention
        from vitcli.core.select import HeadSelection

        c = self.config
        fitted, norm_name = self._fit_each(_as_list([image] + ([to] if to is not None else [])), normalize)
        with torch.inference_mode():
            report = inspect_attention(self.module, self.batch_tensor(fitted[:1]), layers,
                                       HeadSelection(list(range(c.heads))), None, list(range(c.depth)),
                                       keep_qkv=True, also=_norms_capture(c))
            other = report.output if to is None else \
                self.module(self.batch_tensor(fitted[1:]), Capture(inputs=False, blocks=layers, final="none"))
        return fitted, report, other, norm_name

    def _check_tab_memory(self, item: object, name: str, spec: "ImageSpec", layers: int, index: int, count: int,
                          kept: int) -> int:
        """Before tab `index` is computed: its attention, the float64 check of its rows and the page so far
        (`kept` bytes, copied PAGE_COPIES times when written) against the memory limit; the bytes it keeps.
        The option named: --layers when one layer would fit, else the images (tabs), else the size."""
        from vitcli.core.budget import PAGE_COPIES, over, view_tab_bytes, weight_bytes

        size = self.planned_size(item, spec)
        if size is None:
            return 0
        c, limit = self.config, self.memory_limit()
        tokens = (size[0] // c.patch_size) * (size[1] // c.patch_size) + c.num_prefix_tokens
        transient, tab = view_tab_bytes(c, tokens, layers)
        need = weight_bytes(c, self.spec.dtype) + max(transient + kept, PAGE_COPIES * (kept + tab))
        what = (f"the page's tab {index + 1} of {count} ({size[0]}×{size[1]}, {tokens} tokens, {layers} layer"
                f"{'s' if layers > 1 else ''}: attention, its float64 check and the page so far)")
        problem = over(need, limit, what)
        if problem:
            one_t, one_k = view_tab_bytes(c, tokens, 1)
            fewer = weight_bytes(c, self.spec.dtype) + max(one_t + kept // layers,
                                                           PAGE_COPIES * (kept // layers + one_k))
            alone = weight_bytes(c, self.spec.dtype) + max(transient, PAGE_COPIES * tab)
            blame = "--layers" if layers > 1 and fewer <= limit else "IMAGE" if index and alone <= limit else \
                name if spec.size == "native" else "--size"
            raise VitcliError(blame, problem, needs="max_memory")
        return tab

    def _check_finite(self, name: str, *arrays: "ArrayLike") -> None:
        """The page shows numbers: one line naming the weights when the model's outputs are NaN or infinite."""
        if all(np.isfinite(np.asarray(a)).all() for a in arrays):
            return
        counts = getattr(self.checkpoint, "nonfinite", None) or {}
        nan, inf = (sum(c[k] for c in counts.values()) for k in ("nan", "inf"))
        cause = f"its weights hold {nan:,} NaN and {inf:,} infinite values in {len(counts)} tensors" if counts \
            else "they overflow"
        raise VitcliError(self.source, f"the model's attention or features for {name} are NaN or infinite "
                          f"({cause}): the page cannot show them")

    def _view_rollout(self, image: "ImageSource", weights: np.ndarray, layers: list[int],
                      normalize: str | None) -> np.ndarray:
        """Attention rollout (heads' mean, every layer): from the weights `attend` kept when they are every
        layer's (L, H, T, T), else from a pass of its own: (T, T) float64."""
        import torch

        from vitcli.core.analysis import Rollout, fuse_heads

        if layers != list(range(self.config.depth)):
            rolled = self.attend(image, layer="-1", head="mean", normalize=normalize, rollout=True).rollout
            assert rolled is not None  # rollout=True
            return rolled
        rollout = Rollout()
        for w in weights:  # (H, T, T) per layer, in depth order
            rollout.add(fuse_heads(torch.from_numpy(np.asarray(w, np.float64))[None], "mean"))
        assert rollout.result is not None
        return rollout.result[0].numpy()  # (T, T)

    def _view_similarity(self, out: "ViTOutput", other: "ViTOutput", layers: list[int]) -> list[np.ndarray]:
        """Per layer, `figures similar`'s cosine similarity of every token of `out` (T) with every patch of
        `other` (N') on its features (block output through the final norm): (T, N') float64 each."""
        import torch

        from vitcli.core.analysis import cosine_similarity_matrix

        sims = []
        with torch.inference_mode():
            for layer in layers:
                feats = [self._block_features(o, layer, True).double() for o in (out, other)]  # (T, D) each
                sims.append(cosine_similarity_matrix(feats[0], feats[1][other.num_prefix:]).cpu().numpy())  # (T, N')
        return sims

    def _view_posenc(self, grid: tuple[int, int]) -> PageArray | None:
        """Cosine similarity between the patch rows of the position table added at `grid` (N, N), or None."""
        import torch

        from vitcli.core.analysis import cosine_similarity_matrix

        with torch.inference_mode():
            table = self.module.position_rows(grid)
        if table is None:
            return None
        cells = table[0, self.config.pos_prefix_rows:].detach().double().cpu()  # (N, D)
        return _f16(cosine_similarity_matrix(cells, cells).numpy())

    def _view_explain(self, image: "ImageSource", target: str | int | None,
                      normalize: str | None = None) -> PageExplain:
        """The explain hook: the grad-rollout map of `Model.explain` (rows, cols) for the page's panel, for
        any target `explain` takes (a bare N is class:N)."""
        result: ExplainResult = self.explain(image, target="top" if target is None else target,
                              normalize=normalize)
        doc = result.document
        if "input" not in doc:
            raise ValueError("explain of one image gives its document")
        found = doc["explain"]
        return {"map": _f32(np.asarray(result.maps, np.float64).reshape(-1)), "target": found["target"],
                "class": found.get("class"), "label": found.get("label")}

    def _view_text(self, image: "ImageSource", texts: list[str], normalize: str | None) -> PageText:
        """The text panels of one tab: per prompt, the LeGrad map (rows·cols) of `Model.explain` for
        text:PROMPT and the zero-shot score of `Model.classify` over all the prompts (the family's rule)."""
        scores = self.classify(image, labels=texts, normalize=normalize)
        panels: list[PagePanel] = []
        for i, prompt in enumerate(texts):
            result = self.explain(image, target=f"text:{prompt}", method="legrad",
                                  normalize=normalize)
            panels.append({"prompt": prompt, "map": _f32(np.asarray(result.maps, np.float64).reshape(-1)),
                           "prob": float(scores.probs[i]), "logit": float(scores.logits[i])})
        return {"rule": scores.rule, "panels": panels}


def view_prompts(text: str | list[str] | None) -> list[str]:
    """`--text` as the page's prompts: one or several, each stripped and not empty (explain's text:PROMPT)."""
    if text is None:
        return []
    found = [t.strip() for t in ([text] if isinstance(text, str) else text)]
    if not found or not all(found):
        raise VitcliError("--text", "an empty prompt: give --text 'a photo of a cat' (repeat for several)")
    return found


def _png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["ROW_TOLERANCE", "ViewMixin", "ViewResult", "attention_layer", "view_prompts"]
