"""`Model.embed_text` and `Model.classify`: the text tower of a CLIP-family checkpoint, and zero-shot scores.

The text tower is read and built on the first text call only (`checkpoints/text.py`): image commands
never read its weights. Each prompt is tokenised as the checkpoint's library does it and encoded once
per call; `classify` encodes its K labels once and scores every image against them with the family's
rule (CLIP: softmax of exp(logit_scale)·cos over the labels; SigLIP: sigmoid of exp(logit_scale)·cos +
logit_bias). A checkpoint whose head is a classifier with labels (id2label, timm's label_names) is
classified by its head instead, with its own labels.
"""

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vitcli.api.base import ModelBase
from vitcli.api.display import ShowsItself
from vitcli.api.documents import ClassifyDoc, TextEmbedDoc, TextModelDoc
from vitcli.api.images import image_keywords
from vitcli.api.values import keywords
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.images import Images, ImageSource
    from vitcli.api.runs import BatchSpec, Progress
    from vitcli.checkpoints.text import TextTower
    from vitcli.checkpoints.tokenizers import Tokens
    from vitcli.core.text import TextTransformer

MAX_LABELS_BYTES = 4 << 20  # a label file is lines of words: 4 MB holds 100,000 labels
MAX_LABELS = 100_000


@dataclass
class TextEmbedding(ShowsItself):
    """Text embeddings (K, E) float32, unnormalised, with each prompt's tokens and norm."""

    texts: list[str]
    array: "np.ndarray"  # (K, E)
    tokens: list[int]  # each prompt's token count with its special tokens, before truncation
    context: int
    document: TextEmbedDoc

    @property
    def truncated(self) -> list[bool]:
        return [n > self.context for n in self.tokens]

    def to_json(self) -> TextEmbedDoc:
        return self.document


@dataclass
class Classification(ShowsItself):
    """Zero-shot (or head) scores: logits and probabilities (K,) for one image, (B, K) for several."""

    labels: list[str]
    logits: "np.ndarray"
    probs: "np.ndarray"
    rule: str  # softmax, sigmoid, or head (the classifier's own softmax)
    document: ClassifyDoc

    def to_json(self) -> ClassifyDoc:
        return self.document


def read_labels(labels: str | list[str] | tuple[str, ...] | None, labels_file: str | None,
                template: str | None) -> list[str]:
    """The label list: comma-separated text or a list (as given), or a file of one label a line; `template`'s {} filled
    with each. An empty list, a binary, endless or oversized file is one VitcliError."""
    found: list[str] = []
    if isinstance(labels, str):  # the shell's comma-separated text: blanks around and empty items dropped
        found += [t.strip() for t in labels.split(",") if t.strip()]
    elif labels is not None:  # a list is taken as given
        found += list(labels)
    if labels_file is not None:
        found += [line.strip() for line in _label_lines(labels_file) if line.strip()]
    if not found:
        raise VitcliError("--labels", "the label list is empty: give --labels 'a cat,a dog' or --labels-file FILE")
    if len(found) > MAX_LABELS:
        raise VitcliError("--labels", f"{len(found):,} labels: at most {MAX_LABELS:,}")
    if template is not None:
        if "{}" not in template:
            raise VitcliError("--template", f"{template!r:.60} has no {{}} for the label")
        found = [template.replace("{}", label) for label in found]
    return found


def _label_lines(name: str) -> list[str]:
    """A label file's lines: a regular file of UTF-8 text, no NUL bytes, at most MAX_LABELS_BYTES."""
    p = Path(name)
    try:
        st = p.stat()
    except OSError as e:
        raise VitcliError("--labels-file", f"{name}: {e.strerror or 'cannot read'}") from None
    if not stat.S_ISREG(st.st_mode):
        raise VitcliError("--labels-file", f"{name}: not a regular file (a device, pipe or socket never ends)")
    if st.st_size > MAX_LABELS_BYTES:
        raise VitcliError("--labels-file", f"{name}: {st.st_size:,} bytes, more than a label file holds "
                          f"({MAX_LABELS_BYTES >> 20} MB at most)")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except OSError as e:
        raise VitcliError("--labels-file", f"{name}: {e.strerror or 'cannot read'}") from None
    if len(data) > MAX_LABELS_BYTES or b"\0" in data:
        raise VitcliError("--labels-file", f"{name}: binary or oversized, not one label a line of text")
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise VitcliError("--labels-file", f"{name}: not UTF-8 text (a binary file?)") from None


class TextMixin(ModelBase):
    """`embed_text`, `classify` and the text tower for `Model`."""

    _text: "tuple[str | None, TextTower, TextTransformer | None] | None" = None  # (tokenizer given, tower, built)

    def text_tower(self, tokenizer: str | None = None) -> "TextTower":
        """The checkpoint's text tower (checkpoints.text.TextTower), read once; VitcliError without one."""
        cached = self._text
        if cached is not None and tokenizer in (None, cached[0]):
            return cached[1]
        if self.checkpoint is None:
            raise VitcliError(self.spec.spec, "random weights: holds no text tower: text options need a CLIP-family "
                              "checkpoint")
        from vitcli.checkpoints.text import load_text_tower

        tower = load_text_tower(self.checkpoint.path or self.spec.spec, tokenizer)
        self._text = (tokenizer, tower, None)
        return tower

    def text_module(self, tokenizer: str | None = None) -> "TextTransformer":
        """The built core TextTransformer on the model's device, built once."""
        tower = self.text_tower(tokenizer)
        given, _, module = self._text or (tokenizer, tower, None)
        if module is None:
            from vitcli.checkpoints.text import build_text_tower

            device, dtype = self.placement
            module = build_text_tower(tower, device, dtype)
            self._text = (given, tower, module)
        return module

    def _encode(self, texts: list[str], tokenizer: str | None) -> tuple["torch.Tensor", "Tokens"]:
        """(K, E) float32 torch embeddings of `texts`, and their Tokens."""
        import torch

        module = self.text_module(tokenizer)
        tower = self.text_tower(tokenizer)
        tokens = tower.tokenizer(texts, tower.config.context_length)
        device = next(module.parameters()).device
        ids = torch.tensor(tokens.ids, dtype=torch.long, device=device)  # (K, C)
        mask = torch.tensor(tokens.mask, dtype=torch.bool, device=device)  # (K, C)
        if ids.max() >= tower.config.vocab_size:
            raise VitcliError("--tokenizer", f"{tower.tokenizer.path} gives token ids up to {int(ids.max())}, beyond "
                              f"the text tower's {tower.config.vocab_size} embeddings: not this checkpoint's tokenizer")
        with torch.inference_mode():
            out = torch.cat([module(ids[i:i + 64], mask[i:i + 64]) for i in range(0, len(texts), 64)])
        return out.float(), tokens

    @keywords()
    def embed_text(self, texts: list[str] | str, *, tokenizer: str | None = None,
                   output: str | None = None) -> TextEmbedding:
        """Text embeddings (K, E) of prompts, unnormalised (open_clip's encode_text, transformers'
        get_text_features); `output` writes them as .npy. A prompt longer than the context is truncated
        as the checkpoint's library truncates it, and the document says so."""
        texts = _prompts(texts)
        self.check_outputs(extra=[tokenizer] if tokenizer else (), output=output)
        embeddings, tokens = self._encode(texts, tokenizer)
        array = embeddings.cpu().numpy()
        if output:
            from vitcli.io.arrays import save_npy

            save_npy(output, array)
        tower = self.text_tower(tokenizer)
        norms = [float(n) for n in embeddings.norm(dim=-1)]
        doc: TextEmbedDoc = {"command": "embed", "stage": "text", "model": _tower_doc(self.spec.spec, tower),
               "prompts": [{"text": t, "tokens": n, "truncated": n > tokens.context, "norm": round(v, 6)}
                           for t, n, v in zip(texts, tokens.counts, norms, strict=False)],
               "shape": list(array.shape), "outputs": {"array": output}}
        return TextEmbedding(texts, array, tokens.counts, tokens.context, doc)

    def image_embedding_stage(self) -> str:
        """Where a CLIP-family image embedding is: after the projection (CLIP, PE), else the pooled output
        (SigLIP: the attention-pool head's output)."""
        return "projected" if self.projects else "pooled"

    @image_keywords("images")
    def classify(self, images: "ImageSource", *, labels: list[str] | str | None = None, labels_file: str | None = None,
                 template: str | None = None, tokenizer: str | None = None, normalize: str | None = None,
                 output: str | None = None, batch: "BatchSpec | None" = None,
                 progress: "Progress | None" = None) -> Classification:
        """Zero-shot scores of images against labels, with the checkpoint family's rule; a classifier with
        labels of its own (id2label) is scored by its head when no labels are given. `output` writes the
        probabilities (K,) for one image or (B, K) for several."""
        import numpy as np

        from vitcli.api.images import as_images

        images = as_images(images)
        head = labels is None and labels_file is None and bool(self.labels)
        texts = [] if head else read_labels(labels, labels_file, template)
        self.check_outputs(images, extra=[f for f in (tokenizer, labels_file) if f],
                           output=output)
        truncated: list[str] = []
        if head:
            logits, probs, names, rule = self._head_scores(images, normalize, batch, progress)
        else:
            logits, probs, names, rule, truncated = self._zero_shot(images, texts, tokenizer, normalize, batch,
                                                                    progress)
        if not images.many:
            logits, probs = logits[0], probs[0]
        if output:
            from vitcli.io.arrays import save_npy

            save_npy(output, probs.astype(np.float32))
        doc: ClassifyDoc = {"command": "classify", "model": {"source": self.spec.spec}, "rule": rule, "labels": names,
               "logits": np.round(logits, 6).tolist(), "probs": np.round(probs, 6).tolist(),
               "images": images.names(), "truncated": truncated, "outputs": {"array": output}}
        return Classification(names, logits, probs, rule, doc)

    def _image_embeddings(self, images: "Images", stage: str, normalize: str | None, batch: "BatchSpec | None",
                          progress: "Progress | None") -> "np.ndarray":
        """(B, E) float32 numpy: the images' embeddings at `stage` ("projected": the head's output, a
        projection or a classifier's logits), through the one batch path (`runs.run_model`)."""
        from vitcli.api.embed import EmbedCompute, _capture
        from vitcli.api.runs import BatchSpec, run_model

        self.resolve_grid(images)
        compute = EmbedCompute(self.module, _capture({stage}, True), "conv", {stage})
        run = run_model(self, images, compute, main=stage, normalize=normalize, batch=batch or BatchSpec(),
                        progress=progress)
        return run.arrays[stage]

    def _zero_shot(self, images: "Images", texts: list[str], tokenizer: str | None, normalize: str | None,
                   batch: "BatchSpec | None",
                   progress: "Progress | None") -> tuple["np.ndarray", "np.ndarray", list[str], str, list[str]]:
        """Logits and probabilities (B, K) by the family's rule, the labels, the rule, and the labels truncated."""
        import torch

        from vitcli.core.text import zero_shot

        text, tokens = self._encode(texts, tokenizer)  # (K, E): once per run
        module = self.text_module(tokenizer)
        image = torch.from_numpy(self._image_embeddings(images, self.image_embedding_stage(), normalize, batch,
                                                        progress)).to(text.device)  # (B, E)
        if image.shape[-1] != text.shape[-1]:
            raise VitcliError(self.spec.spec, f"its image embedding is {image.shape[-1]}-d and its text embedding "
                              f"{text.shape[-1]}-d: not one joint space")
        with torch.inference_mode():
            bias = None if module.logit_bias is None else module.logit_bias.float()
            logits, probs = zero_shot(image.float(), text, module.logit_scale.float(), bias)
        cut = [t for t, was in zip(texts, tokens.truncated, strict=False) if was]
        return logits.cpu().numpy(), probs.cpu().numpy(), texts, "sigmoid" if bias is not None else "softmax", cut

    def _head_scores(self, images: "Images", normalize: str | None, batch: "BatchSpec | None",
                     progress: "Progress | None") -> tuple["np.ndarray", "np.ndarray", list[str], str]:
        """The classifier's logits (B, C) and softmax, labelled with the head's own labels."""
        import numpy as np

        logits = self._image_embeddings(images, "projected", normalize, batch, progress).astype(np.float64)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        labels = self.labels
        return logits, e / e.sum(-1, keepdims=True), [labels.get(i, str(i)) for i in range(logits.shape[-1])], "head"


def _prompts(texts: object) -> list[str]:
    """One prompt or a list of them (each text); none is the one-line error."""
    items = [texts] if isinstance(texts, str) else list(texts) if isinstance(texts, (list, tuple)) else None
    if items is None or not all(isinstance(t, str) for t in items):
        raise VitcliError("--text", f"{texts!r:.60} is not a prompt or a list of prompts")
    if not items:
        raise VitcliError("--text", "no prompt given")
    return items


def _tower_doc(source: str, tower: "TextTower") -> TextModelDoc:
    """The model given (`source`) and its text tower's facts, for the JSON document."""
    c = tower.config
    return {"source": source, "text_layout": tower.layout, "text_library": tower.library, "text_dim": c.dim,
            "text_depth": c.depth, "text_heads": c.heads, "context_length": c.context_length, "embed_dim": c.out_dim,
            "mask": "causal" if c.causal else "bidirectional", "pooling": c.pooling, "tokenizer": tower.tokenizer.kind,
            "tokenizer_file": tower.tokenizer.path, "notes": list(tower.notes)}


__all__ = ["Classification", "TextEmbedding", "TextMixin", "read_labels"]
