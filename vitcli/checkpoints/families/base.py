"""What a checkpoint family is, as data: a key table, its variants, and the rules weights cannot show.

A `Family` says where a library's vision weights live (`roots`), how its blocks are named, a table
from vitcli's core keys (see `vitcli/core/config.py`) to the family's keys (`Rule`s), the keys it
carries that a vision model does not use, and its quirks as fields: LayerNorm eps, activation
rule, pooling rule, renames decided by a config file, preprocessing read from config files, and
its `Variant`s: the finer labels `info` prints (deit, dino, hf-deit, openai-clip, …), each with the
preprocessing defaults of its library and any eps / activation it implies. Shared code (here and
in `infer.py`) only reads these fields; adding a family is adding data.
"""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vitcli.checkpoints.config import CheckpointConfig
from vitcli.checkpoints.preprocess import Preprocess
from vitcli.core.config import PatchRemainder, ViTConfig
from vitcli.errors import VitcliError

if TYPE_CHECKING:  # the rules work on torch tensors and on shapes.ShapeTensor alike: torch only when tensors are
    from torch import Tensor

Source = str | tuple[str, ...]  # one key, or keys concatenated along dim 0 (separate q, k, v → qkv)


@dataclass(frozen=True)
class Rule:
    """One core key and the family keys it can come from (alternatives, first match wins)."""

    core: str
    sources: tuple[Source, ...]
    op: str = ""  # "": as is; "3d": (D,) or (T, D) → (1, T, D); "T": transpose (CLIP's proj);
    # "qzv": from two parts (q bias, v bias) → q, 0, v (EVA, BEiT: no k bias); one part stays as is;
    # "masked": from two parts (qkv bias, bias_mask) → bias·mask (DINOv3's LinearKMaskedBias)
    needs: str = ""  # a key under the same prefix that must be present for the rule to apply
    unless: str = ""  # a key under the same prefix that must be absent (transformers' up_proj: fc1 or fc1_x)
    #   "q3" / "kv3": the first third / last two thirds of a stacked in_proj (nn.MultiheadAttention's
    #   q / k, v rows); "hwc": a Linear patch embedding (D, P·P·C) on patches flattened (row, col,
    #   channel) → the equivalent conv kernel (D, C, P, P) (NaFlex; 3 channels)


def pair(core: str, src: str | tuple[Source, ...], op: str = "") -> list[Rule]:
    """Rules for core.weight and core.bias from src.weight / src.bias (each alternative)."""
    alts = (src,) if isinstance(src, str) else src
    return [Rule(f"{core}.{p}", tuple(_suffix(a, p) for a in alts), op) for p in ("weight", "bias")]


def _suffix(source: Source, part: str) -> Source:
    return f"{source}.{part}" if isinstance(source, str) else tuple(f"{s}.{part}" for s in source)


@dataclass(frozen=True)
class Evidence:
    """What a family's rules may look at: the mapped core keys' shapes, where they came from, config files."""

    shapes: Mapping[str, tuple[int, ...]]  # core key → shape
    expected: Mapping[str, str]  # core key → the source name(s) it would come from (for messages)
    depth: int
    root: str  # '' or the vision prefix ('visual.', 'backbone.', …)
    name: str  # spec or file name, searched for 'quickgelu'
    format: str  # safetensors, torch (weights_only), torchscript
    nested_under: str = ""  # 'teacher', 'state_dict', …
    all_keys: frozenset[str] = frozenset()  # every source key (OpenAI's extra entries, DINOv2's mask token)
    files: CheckpointConfig = CheckpointConfig()
    applied: frozenset[str] = frozenset()  # what the mapping converted: "linear-patch" (a NaFlex Linear embedding)

    def has(self, key: str) -> bool:
        return key in self.shapes

    @property
    def model_name(self) -> str:
        """The file's name without folders or extension (hub specs as given); a Hugging Face cache
        snapshot (`…/models--ORG--NAME/snapshots/<hash>/…`) is named after its repository, ORG/NAME."""
        if self.name.startswith(("hf-hub:", "timm:")):
            return self.name
        parts = self.name.rstrip("/").split("/")
        at = parts.index("snapshots") if "snapshots" in parts[:-1] else 0
        if at > 0 and parts[at - 1].startswith("models--"):
            return parts[parts.index("snapshots") - 1][len("models--"):].replace("--", "/", 1)
        name = parts[-1]
        for ext in (".safetensors", ".pth.tar", ".pth", ".pt", ".bin"):
            if name.endswith(ext):
                return name[: -len(ext)]
        return name


Why = tuple[str, str]  # (value, why) for the notes `info` prints
NATIVE_GRID = "native"  # a `parts` value of rope_ref_grid: the native grid, once the table has been read


@dataclass(frozen=True)
class Variant:
    """A finer label of a family, when it applies, and its library's defaults."""

    label: str
    when: Callable[[Evidence], bool]
    preprocess: Callable[[ViTConfig], Preprocess]  # the library's default for this kind of model
    activation: Why | None = None  # an activation the label implies (OpenAI CLIP: QuickGELU)
    eps: float | None = None  # a LayerNorm eps the label implies (timm's CLIP towers: 1e-5)
    pos_resample: Why | None = None  # (PosResample, why) when the label's library resizes tables its own way
    patch_remainder: PatchRemainder | None = None  # when it differs from the family's (NaFlex: refuse)
    joint_head: bool = False  # a head that is no classifier projects into a joint image-text space (CLIP, PE)


CLASSIFIER_SIZES = frozenset({1000, 11821, 21841,
                              21843})  # ImageNet-1k, -12k, -21k heads: a classifier, not a projection


def projects(variant: Variant, num_classes: int, labelled: bool) -> bool:
    """The head is the image tower's projection into the joint image-text space (embed --stage projected):
    the variant has one, and the head is not a classifier (no labels, not an ImageNet head)."""
    return variant.joint_head and num_classes > 0 and not labelled and num_classes not in CLASSIFIER_SIZES


def always(ev: Evidence) -> bool:
    return True


def name_activation(ev: Evidence, label: str) -> Why:
    """timm, torchvision, open_clip: QuickGELU when the model's name or open_clip's config says so."""
    names = f"{ev.model_name} {ev.files.architecture}".lower()  # the file's name, not its folders
    if "quickgelu" in names or (ev.files.open_clip and ev.files.open_clip.quick_gelu):
        return "quick_gelu", "activation quick_gelu (model name / open_clip config says quickgelu)"
    return "gelu", f"activation gelu ({label}'s default; pass activation='quick_gelu' for QuickGELU-trained weights)"


def class_pooling(ev: Evidence) -> str:
    return "cls"


def no_renames(files: CheckpointConfig) -> Mapping[str, str]:
    return {}


def no_file_preprocess(ev: Evidence, config: ViTConfig) -> Preprocess | None:
    return None


def no_parts(ev: Evidence) -> tuple[dict, tuple[str, ...]]:
    return {}, ()


@dataclass(frozen=True)
class Family:
    """A checkpoint layout: its key table, its variants and the rules its weights cannot show."""

    name: str
    title: str
    markers: tuple[str, ...]  # regexes that must each match a key under the root
    roots: tuple[str, ...]  # where the vision model's keys start, most specific first
    block_prefixes: tuple[str, ...]  # with {i}; the first one present is used
    top: tuple[Rule, ...]
    block: tuple[Rule, ...]
    variants: tuple[Variant, ...]  # the first whose `when` holds names the checkpoint; the last always holds
    outside: tuple[Rule, ...] = ()  # rules on full keys outside the root (classifier, projection)
    ignore: tuple[str, ...] = ()  # regexes on keys under the root that the vision model does not use
    ignore_outside: tuple[str, ...] = ()  # regexes on full keys outside the root (text tower, …)
    eps: float = 1e-6
    activation: Callable[[Evidence, str], Why] = name_activation  # (evidence, label) → rule
    pooling: Callable[[Evidence], str] = class_pooling  # with a class token; mean without one
    renames: Callable[[CheckpointConfig], Mapping[str, str]] = no_renames  # core → core, after the table
    file_preprocess: Callable[[Evidence, ViTConfig], Preprocess | None] = no_file_preprocess
    notes: tuple[str, ...] = ()  # printed by `info` for every checkpoint of the family
    required: tuple[str, ...] = ("patch_embed.proj.weight", "pos_embed")
    block_styles: tuple[int, ...] = ()  # per block prefix: which source alternative names a missing key
    # config fields weights cannot show (RoPE variant, base, reference grid, …) and the notes saying why;
    # raises VitcliError naming a part of the family that vitcli cannot build
    parts: Callable[[Evidence], tuple[dict, tuple[str, ...]]] = no_parts
    default_size: tuple[int, int] = (224, 224)  # native size of a model without a position table
    # how the library resizes a learned table to another grid (a core PosResample) and why, for `info`
    pos_resample: Why = ("bicubic", "antialiased bicubic (timm resample_abs_pos_embed)")
    # a side that is not a multiple of P: the library's stride-P patch conv floors it (NaFlex's patchify refuses)
    patch_remainder: PatchRemainder = "floor"
    absent: tuple[str, ...] = ()  # regexes no key under the root may match (a look-alike layout's parts)
    # a regex timm's config.json `architecture` must match when a config names one: for a layout told
    # apart from a look-alike by keys it lacks (PE spatial: no final norm), the config has the last word
    architectures: str = ""

    def variant(self, ev: Evidence) -> Variant:
        return next(v for v in self.variants if v.when(ev))


def detect(keys: Iterable[str], families: Sequence[Family], family: str | None = None,
           architecture: str = "") -> tuple[Family, str]:
    """The first of `families` whose markers all match (and whose `architectures` allow the config's
    `architecture`, when there is one), and its root prefix; `family` forces one."""
    keys = list(keys)
    names = {f.name: f for f in families}
    if family and family not in names:
        raise VitcliError("--family", f"unknown checkpoint family: use one of {', '.join(names)}")
    for fam in (names[family],) if family else families:
        if not family and architecture and fam.architectures and not re.search(fam.architectures, architecture):
            continue
        for root in fam.roots:
            rel = [k[len(root):] for k in keys if k.startswith(root)]
            if all(any(re.search(m, k) for k in rel) for m in fam.markers) and not any(
                    re.search(a, k) for a in fam.absent for k in rel):
                return fam, root
    sample = ", ".join(sorted(keys)[:6])
    if family:
        raise VitcliError("--family", f"the keys do not look like a {family} checkpoint (first keys: {sample})")
    raise VitcliError("checkpoint", f"not a ViT checkpoint vitcli knows ({', '.join(names)}); first keys: {sample}")


@dataclass
class Mapped:
    """The checkpoint in core names, with what was used, ignored and left over."""

    family: Family
    root: str
    tensors: "dict[str, Tensor]"  # core key → tensor (or ShapeTensor)
    origin: dict[str, str]  # core key → source key(s)
    expected: dict[str, str]  # core key → source name(s) it would come from (for 'missing' messages)
    ignored: list[str]  # known keys a vision model does not use
    leftover: list[str]  # keys no rule took
    depth: int
    problems: list[str] = field(default_factory=list)  # shape clashes while concatenating
    applied: frozenset[str] = frozenset()  # conversions made ("linear-patch")


class _Taker:
    """Applies rules to the source tensors, recording what each core key came from."""

    def __init__(self, tensors: "Mapping[str, Tensor]") -> None:
        self.tensors, self.used = tensors, set[str]()
        self.out: dict[str, Tensor] = {}
        self.origin: dict[str, str] = {}
        self.expected: dict[str, str] = {}
        self.problems: list[str] = []
        self.applied: set[str] = set()

    def take(self, core: str, rule: Rule, prefix: str, style: int = 0) -> None:
        """The first alternative of `rule` whose keys are all present, concatenated and shaped."""
        if (rule.needs and prefix + rule.needs not in self.tensors) or (rule.unless and prefix + rule.unless
                                                                        in self.tensors):
            return
        self.expected[core] = _describe(rule.sources[min(style, len(rule.sources) - 1)], prefix)
        for alt in rule.sources:
            names = [prefix + n for n in ((alt,) if isinstance(alt, str) else alt)]
            if all(n in self.tensors for n in names):
                parts = [self.tensors[n] for n in names]
                self.used.update(names)
                try:
                    value = _cat(parts) if len(parts) > 1 else parts[0]
                except RuntimeError:
                    self.problems.append(f"{' + '.join(names)} have shapes "
                                         f"{', '.join(str(tuple(p.shape)) for p in parts)} that cannot be stacked")
                    return
                if rule.op == "hwc" and value.dim() == 2:
                    self.applied.add("linear-patch")
                self.out[core] = _apply(value, rule.op, names[0], self.problems, parts)
                self.origin[core] = " + ".join(names)
                return


def map_keys(tensors: "Mapping[str, Tensor]", fam: Family, root: str,
             files: CheckpointConfig = CheckpointConfig()) -> Mapped:
    """Apply the family's table (and the renames its config files ask for): core tensors, and every
    source key sorted into used / ignored / left over. `tensors` is not changed."""
    t = _Taker(tensors)
    for rule in fam.top:
        t.take(rule.core, rule, root)
    block_prefix, indices = _blocks(tensors, fam, root)
    position = fam.block_prefixes.index(block_prefix)
    style = fam.block_styles[position] if position < len(fam.block_styles) else 0
    depth = _backed_depth(indices)
    for i in range(depth):
        for rule in fam.block:
            t.take(f"blocks.{i}.{rule.core}", rule, root + block_prefix.format(i=i), style)
    for rule in fam.outside:
        if rule.core not in t.out:
            t.take(rule.core, rule, "")
    for old, new in fam.renames(files).items():
        if old in t.out:
            t.out[new], t.origin[new] = t.out.pop(old), t.origin.pop(old)
            t.expected[new] = t.expected.pop(old)
    ignored, leftover = _sort_unused(tensors, t.used, fam, root)
    return Mapped(fam, root, t.out, t.origin, t.expected, ignored, leftover, depth, t.problems, frozenset(t.applied))


def _sort_unused(tensors: Iterable[str], used: set[str], fam: Family, root: str) -> tuple[list[str], list[str]]:
    """Keys no rule took: (known to be unused by a vision model, left over)."""
    ignored: list[str] = []
    leftover: list[str] = []
    for key in tensors:
        if key in used:
            continue
        inside = key.startswith(root)
        patterns = fam.ignore if inside else fam.ignore_outside
        name = key[len(root):] if inside else key
        (ignored if any(re.search(p, name) for p in patterns) else leftover).append(key)
    return sorted(ignored), sorted(leftover)


def _describe(source: Source, prefix: str) -> str:
    return " + ".join(prefix + s for s in ((source,) if isinstance(source, str) else source))


def _apply(value: "Tensor", op: str, name: str, problems: list[str], parts: "Sequence[Tensor]" = ()) -> "Tensor":
    if op == "qzv" and len(parts) == 2:
        q, v = parts
        return _cat([q, _zeros_like(q), v])
    if op == "masked" and len(parts) == 2:
        bias, mask = parts
        return bias * mask.to(bias.dtype)
    if op == "3d":
        if value.dim() not in (1, 2, 3) and not (value.dim() == 4 and value.shape[0] == 1):  # NaFlex (1, R, C, D)
            problems.append(f"{name} has shape {tuple(value.shape)}, expected (D,), (T, D) or (1, T, D)")
        return value.reshape(1, -1, value.shape[-1])
    if op == "hwc":
        if value.dim() == 4:
            return value  # already a conv kernel
        p = int(round((value.shape[-1] / 3) ** 0.5)) if value.dim() == 2 else 0
        if value.dim() != 2 or 3 * p * p != value.shape[-1]:
            problems.append(f"{name} has shape {tuple(value.shape)}, expected a (D, P·P·3) patch projection")
            return value
        return value.reshape(value.shape[0], p, p, 3).permute(0, 3, 1, 2).contiguous()  # (D, C, P, P)
    if op in ("q3", "kv3"):
        if value.shape[0] % 3:
            problems.append(f"{name} has {value.shape[0]} rows, not three stacked projections")
            return value
        d = value.shape[0] // 3
        return value[:d] if op == "q3" else value[d:]
    if op == "T":
        if value.dim() != 2:
            problems.append(f"{name} has shape {tuple(value.shape)}, expected a (D, E) projection")
            return value
        return value.t()
    return value


def _is_shape(t: object) -> bool:
    from vitcli.checkpoints.shapes import ShapeTensor

    return isinstance(t, ShapeTensor)


def _cat(parts: "Sequence[Tensor]") -> "Tensor":
    """torch.cat(parts, 0), or its shape for ShapeTensors (no torch import when describing a file)."""
    if _is_shape(parts[0]):
        from vitcli.checkpoints.shapes import ShapeTensor

        return ShapeTensor.cat(parts)  # type: ignore[arg-type,return-value]
    import torch

    return torch.cat(list(parts), 0)


def _zeros_like(t: "Tensor") -> "Tensor":
    """Zeros of t's shape (a ShapeTensor is its own shape)."""
    if _is_shape(t):
        return t
    import torch

    return torch.zeros_like(t)


def _blocks(tensors: Iterable[str], fam: Family, root: str) -> tuple[str, set[int]]:
    """The block prefix in use and the block indices that hold at least one key a block rule takes
    (a stray `blocks.10000000.junk` backs no block: it stays a left-over key)."""
    names = {n for rule in fam.block for alt in rule.sources for n in ((alt,) if isinstance(alt, str) else alt)}
    for prefix in fam.block_prefixes:
        pattern = re.compile("^" + re.escape(root + prefix).replace(r"\{i\}", r"(\d+)"))
        found = [(int(m.group(1)), k[m.end():]) for k in tensors if (m := pattern.match(k))]
        if found:
            return prefix, {i for i, rest in found if rest in names}
    return fam.block_prefixes[0], set()


def _backed_depth(indices: set[int]) -> int:
    """The number of blocks 0, 1, 2, … that the keys back without a gap (blocks after a gap are left over)."""
    depth = 0
    while depth in indices:
        depth += 1
    return depth


def evidence(m: Mapped, name: str, format: str, nested_under: str = "", all_keys: Iterable[str] = (),
             files: CheckpointConfig = CheckpointConfig()) -> Evidence:
    """The evidence a mapped checkpoint offers its family's rules (shapes only, no tensors)."""
    shapes = {k: tuple(v.shape) for k, v in m.tensors.items()}
    return Evidence(shapes, dict(m.expected), m.depth, m.root, name, format, nested_under, frozenset(all_keys), files,
                    m.applied)


__all__ = ["CLASSIFIER_SIZES", "Evidence", "Family", "Mapped", "Rule", "Variant", "NATIVE_GRID", "always",
           "class_pooling", "detect", "evidence",
           "map_keys", "name_activation", "no_parts", "pair", "projects"]
