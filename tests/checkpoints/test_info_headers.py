"""`info --weights` describes a checkpoint from what describes it: the safetensors header, config files.

The document must equal the one of the full read (`--check-values`, which loads every tensor), its
parameter count must be the peer's own count and its GMACs the formula's; the process describing a
safetensors file or a Hugging Face folder must not import torch and must stay under 150 MB.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.checkpoints.zoo import cases

PEAK_BOUND = 150 << 20  # bytes: the goal for describing a ViT-B / ViT-g checkpoint

# runs the CLI as a user does, then reports whether torch was imported and the process's peak RSS
CHILD = """
import json, sys
sys.argv = ["vitcli", *json.loads(sys.argv[1])]
from vitcli.cli import main
code = 0
try:
    main()
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
sys.stderr.write("\\n" + json.dumps({"code": code, "torch": "torch" in sys.modules, "peak": peak}) + "\\n")
"""


def run_info(*args: str) -> tuple[dict, dict]:
    """(the --json document, {code, torch, peak}) of `vitcli info ARGS --json` in its own process."""
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(["info", *args, "--json"])],
                          capture_output=True, text=True, timeout=600)
    facts = json.loads(done.stderr.strip().splitlines()[-1])
    assert facts["code"] == 0, done.stderr
    return json.loads(done.stdout), facts


def vit_gmacs(grid: int, prefix: int, patch: int, dim: int, mlp: int, depth: int, classes: int) -> float:
    """A ViT's multiply-accumulates by hand: patch conv, qkv + proj, Q·Kᵀ and A·V, the MLP, the head."""
    n = grid * grid
    t = n + prefix
    block = t * 4 * dim * dim + 2 * t * t * dim + 2 * t * dim * mlp
    return round((n * dim * 3 * patch * patch + depth * block + dim * classes) / 1e9, 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A timm ViT-B/16 saved with safetensors and a transformers ViTModel folder, with the peers' counts."""
    import timm
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("headers")
    torch.manual_seed(0)
    timm_model = timm.create_model("vit_base_patch16_224", pretrained=False)
    timm_state = timm_model.state_dict()
    save_file({k: v.contiguous() for k, v in timm_state.items()}, folder / "vit_b16.safetensors")
    hf = ViTModel(ViTConfig())
    hf.save_pretrained(folder / "hf_vit")
    hf_state = hf.state_dict()
    pooler = sorted(k for k in hf_state if k.startswith("pooler."))  # transformers' tanh pooler: no ViT part
    out = {"timm": (folder / "vit_b16.safetensors", sum(v.numel() for v in timm_state.values()), 1000, []),
           "hf": (folder / "hf_vit", sum(v.numel() for k, v in hf_state.items() if k not in pooler), 0, pooler)}
    del timm_model, hf, timm_state, hf_state
    return out


@pytest.mark.parametrize("kind", ["timm", pytest.param("hf", marks=pytest.mark.slow)])  # about 8 s each
def test_info_reads_only_the_header(files: dict, kind: str) -> None:
    path, params, classes, ignored = files[kind]
    doc, facts = run_info("--weights", str(path))
    full, full_facts = run_info("--weights", str(path), "--check-values")
    assert doc == full  # the same document as the path that loads every tensor
    assert not facts["torch"], "describing a safetensors checkpoint imported torch"
    assert full_facts["torch"]  # control: the full read does import it (the probe sees it)
    assert facts["peak"] < PEAK_BOUND, facts
    assert full_facts["peak"] > 2 * facts["peak"]  # control: reading the 330 MB of values shows in the peak
    m = doc["model"]
    assert m["params"] == params
    assert m["gmacs"] == vit_gmacs(14, 1, 16, 768, 3072, 12, classes)
    assert (m["dim"], m["depth"], m["heads"], m["mlp_dim"], m["num_classes"]) == (768, 12, 12, 3072, classes)
    assert m["ignored_keys"] == ignored


def test_shape_tensors_follow_torch_through_the_family_ops() -> None:
    """Every op of the key tables (families.base._apply) gives a ShapeTensor the shape torch gives a tensor."""
    from vitcli.checkpoints.families.base import _apply, _cat
    from vitcli.checkpoints.shapes import ShapeTensor

    cases_ = [("", [(8, 4)]), ("3d", [(5, 4)]), ("3d", [(4,)]), ("3d", [(1, 2, 3, 4)]), ("hwc", [(6, 48)]),
              ("hwc", [(6, 3, 4, 4)]), ("q3", [(12, 4)]), ("kv3", [(12,)]), ("T", [(4, 6)]), ("qzv", [(4,), (4,)]),
              ("masked", [(12,), (12,)]), ("", [(4, 6), (4, 6), (4, 6)])]
    for op, shapes in cases_:
        real = [torch.zeros(s, device="meta") for s in shapes]
        fake = [ShapeTensor(s) for s in shapes]
        problems_real, problems_fake = [], []
        want = _apply(torch.cat(real) if op not in ("qzv", "masked") and len(real) > 1 else real[0], op, "k",
                      problems_real, real)
        got = _apply(_cat(fake) if op not in ("qzv", "masked") and len(fake) > 1 else fake[0], op, "k",
                     problems_fake, fake)
        assert got.shape == tuple(want.shape) and problems_fake == problems_real, (op, shapes)
    with pytest.raises(RuntimeError):
        _cat([ShapeTensor((4, 3)), ShapeTensor((4, 2))])  # as torch.cat refuses


# checkpoints whose key tables use the reshaping ops: BEiT's q/v biases, DINOv3's masked bias, NaFlex's Linear
# patch embedding, open_clip's stacked in_proj and transposed projection, a torch .pth (mmap'd, not read)
ZOO = ["timm/beitv2_base_patch16_224.in1k_ft_in22k_in1k", "facebook/dinov3-vitb16-pretrain-lvd1689m",
       "google/siglip2-base-patch16-naflex", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
       "torch.hub/dinov2_vits14_reg4_pretrain.pth"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "ViT-H" in n else n  # ViT-H: 8 s
                                  for n in ZOO])
def test_shapes_only_load_equals_the_full_load(tmp_path: Path, name: str) -> None:
    from vitcli.checkpoints.load import load_checkpoint

    case = next(c for c in cases() if c.name == name)
    case.build(tmp_path)
    spec = str(tmp_path / case.file) if case.file else str(tmp_path)
    full, shapes = load_checkpoint(spec, strict=False), load_checkpoint(spec, strict=False, shapes_only=True)
    assert (shapes.family, shapes.config, shapes.preprocess, shapes.ignored_keys, shapes.origin, shapes.notes) == \
        (full.family, full.config, full.preprocess, full.ignored_keys, full.origin, full.notes)
    assert {k: tuple(v.shape) for k, v in shapes.state_dict.items()} == \
        {k: tuple(v.shape) for k, v in full.state_dict.items()}
    assert shapes.num_params == full.num_params


def test_a_described_model_reads_its_values_when_run(tmp_path: Path) -> None:
    """load_model(describe_only=True) reads shapes; running it reads the weights then: timm's own forward agrees."""
    import numpy as np
    import timm
    from safetensors.torch import save_file

    from tests.checkpoints.parity import scramble
    from vitcli.api import load_model
    from vitcli.checkpoints.shapes import ShapeTensor

    peer = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2).eval()
    scramble(peer, 7)
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, tmp_path / "tiny.safetensors")
    model = load_model(str(tmp_path / "tiny.safetensors"), describe_only=True)
    assert isinstance(model.checkpoint.state_dict["pos_embed"], ShapeTensor)
    pixels = torch.rand(1, 3, 224, 224)  # (B, C, H, W), already normalised: compare the encoders, not preprocessing
    from vitcli.core.capture import Capture

    with torch.no_grad():
        want = peer.forward_features(pixels)[0]  # (T, D)
        got = model.module(pixels, Capture(final="tokens")).output[0]  # (T, D)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _damage(state: dict, how: str) -> dict:
    """A timm state dict damaged one way: shapes that keep the parameter count, a key missing, a key extra."""
    state = dict(state)
    if how == "same-count shapes":
        state["blocks.1.mlp.fc1.weight"] = state["blocks.1.mlp.fc1.weight"].t().contiguous()  # (D, M), not (M, D)
        state["blocks.0.attn.proj.weight"] = state["blocks.0.attn.proj.weight"].reshape(96, 384).contiguous()
    elif how == "missing":
        del state["blocks.0.norm2.bias"]
    else:
        state["blocks.1.mlp.fc3.weight"] = torch.zeros(4, 4)
    return state


@pytest.mark.parametrize("how", ["same-count shapes", "missing", "extra"])
def test_a_checkpoint_that_does_not_fit_is_the_same_error_from_shapes(tmp_path: Path, how: str) -> None:
    import timm
    from safetensors.torch import save_file

    from vitcli.checkpoints.load import load_checkpoint
    from vitcli.errors import VitcliError

    state = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2).state_dict()
    save_file(_damage(state, how), tmp_path / "bad.safetensors")
    errors = []
    for shapes_only in (False, True):
        with pytest.raises(VitcliError) as e:
            load_checkpoint(tmp_path / "bad.safetensors", shapes_only=shapes_only)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "does not fit" in errors[0]
