"""Bounded fuzzing of the image loader and the checkpoint reader, in-process, with a fixed budget.

Hypothesis mutates the bytes of real files (flips, overwrites, deletions, insertions, duplicated
runs, truncation; biased towards headers, where the parsing happens). The only allowed outcomes
are success or `VitcliError`: any other exception is a bug. The seed is fixed (derandomize), so a
run is repeatable and costs the same every time.
"""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as save_safetensors
from safetensors.torch import save_file

from tests.reliability.corpus import SAMPLES
from vitcli.checkpoints.read import read_checkpoint
from vitcli.errors import VitcliError
from vitcli.io.images import load_image

BUDGET = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.data_too_large])


def _encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _seed_images() -> dict[str, bytes]:
    """Small real pictures in the formats people feed in: JPEG with EXIF, PNG (RGBA, 16-bit), GIF, WebP."""
    photo = Image.open(SAMPLES / "chelsea.jpg").convert("RGB").resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    grey16 = Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 61))
    frames = [photo.quantize(16), photo.rotate(90).quantize(16)]
    return {
        "exif.jpg": _encoded(photo, "JPEG", quality=80, exif=exif),
        "rgba.png": _encoded(photo.convert("RGBA"), "PNG"),
        "grey16.png": _encoded(grey16, "PNG"),
        "anim.gif": _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "photo.webp": _encoded(photo, "WEBP", quality=70),
    }


SEED_IMAGES = _seed_images()


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """`data` with 1-6 random edits; positions favour the first 600 bytes (headers, tables)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        if not b:
            break
        head = st.integers(0, min(len(b), 600) - 1)
        pos = draw(st.one_of(head, st.integers(0, len(b) - 1)))
        kind = draw(st.sampled_from(["flip", "byte", "word", "delete", "insert", "repeat", "truncate"]))
        if kind == "flip":
            b[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            b[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "word":  # a length or size field set to something extreme
            b[pos : pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
        elif kind == "delete":
            del b[pos : pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            b[pos:pos] = b[pos : pos + draw(st.integers(1, 256))]
        else:
            del b[pos:]
    return bytes(b)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF it skips
@pytest.mark.parametrize("name", sorted(SEED_IMAGES))
def test_fuzzed_images_load_or_fail_cleanly(tmp_path: Path, name: str) -> None:
    path = tmp_path / name

    @settings(BUDGET, max_examples=60)
    @given(data=mutations(SEED_IMAGES[name]))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            loaded = load_image(str(path), max_pixels=4_000_000)
        except VitcliError as e:
            assert e.source == str(path) and "\n" not in e.problem
            return
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3 and loaded.pixels.shape[2] == 3

    check()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_sample_photo(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"

    @BUDGET
    @given(data=mutations((SAMPLES / "chelsea_exif_rotated.jpg").read_bytes()))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            loaded = load_image(str(path))
        except VitcliError as e:
            assert e.source == str(path) and "\n" not in e.problem
            return
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3 and loaded.pixels.shape[2] == 3

    check()


def _seed_checkpoints() -> dict[str, bytes]:
    """A small ViT-like state dict as safetensors and as torch's zip and legacy formats."""
    g = torch.Generator().manual_seed(0)
    state = {"cls_token": torch.randn(1, 1, 8, generator=g), "pos_embed": torch.randn(1, 5, 8, generator=g),
             "patch_embed.proj.weight": torch.randn(8, 3, 4, 4, generator=g), "blocks.0.norm1.bias": torch.zeros(8),
             "head.weight": torch.randn(2, 8, generator=g).half(), "steps": torch.tensor([3], dtype=torch.int64)}
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save({"state_dict": state, "epoch": 3}, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    return {"w.safetensors": save_safetensors(state), "w.pth": zipped.getvalue(), "w_legacy.pt": legacy.getvalue(),
            "w_script.pt": _torchscript()}


def _torchscript() -> bytes:
    """A TorchScript archive of a small module (the format of OpenAI's CLIP checkpoints)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.save is deprecated, the files are still around
        torch.jit.save(torch.jit.script(torch.nn.Linear(4, 3)), buf)
    return buf.getvalue()


SEED_CHECKPOINTS = _seed_checkpoints()


@pytest.mark.parametrize("name", sorted(SEED_CHECKPOINTS))
def test_fuzzed_checkpoints_read_or_fail_cleanly(tmp_path: Path, name: str) -> None:
    path = tmp_path / name

    @BUDGET
    @given(data=mutations(SEED_CHECKPOINTS[name]))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            raw = read_checkpoint(path)
        except VitcliError as e:
            assert e.source == str(path) and "\n" not in e.problem
            return
        assert raw.tensors and all(isinstance(t, torch.Tensor) for t in raw.tensors.values())

    check()


def _zip_cases(good: bytes) -> dict[str, bytes]:
    """Damaged zip directories the fuzzer found crashing the reader (BadZipFile, UnicodeDecodeError)."""
    central = good.index(b"PK\x01\x02")  # the first central-directory record
    name = central + 46  # the record's file name (flagged UTF-8 by torch)
    return {
        "bad directory magic": good[:central] + b"PK\x01\x03" + good[central + 4 :],
        "name not UTF-8": good[:name] + b"\xaa" + good[name + 1 :],
    }


@pytest.mark.parametrize("case", ["bad directory magic", "name not UTF-8"])
def test_damaged_zip_directories_found_by_the_fuzzer(tmp_path: Path, case: str) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(_zip_cases(SEED_CHECKPOINTS["w.pth"])[case])
    with pytest.raises(VitcliError, match="damaged zip archive") as e:
        read_checkpoint(path)
    assert e.value.source == str(path)


def test_gif_cut_after_the_second_frame_descriptor(tmp_path: Path) -> None:
    """Found by fuzzing: counting frames read past the end (IndexError inside Pillow's GIF seek)."""
    gif = SEED_IMAGES["anim.gif"]
    second = gif.index(b"\x00\x2c", gif.index(b"\x2c") + 1) + 1  # the second image descriptor
    path = tmp_path / "cut.gif"
    path.write_bytes(gif[: second + 10])  # the 10-byte descriptor, then nothing
    with pytest.raises(VitcliError, match="damaged or truncated") as e:
        load_image(str(path))
    assert e.value.source == str(path)


def test_torchscript_member_with_an_unknown_compression(tmp_path: Path) -> None:
    """Found by fuzzing: zipfile's NotImplementedError for a compression method it does not know."""
    data = bytearray(SEED_CHECKPOINTS["w_script.pt"])
    for record, offset in ((b"PK\x01\x02", 10), (b"PK\x03\x04", 8)):  # central / local headers: method
        at = data.find(record)
        while at != -1:
            data[at + offset : at + offset + 2] = (99).to_bytes(2, "little")
            at = data.find(record, at + 4)
    path = tmp_path / "script.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(VitcliError, match="damaged zip archive"):
        read_checkpoint(path)


EDITS = ["drop", "reshape", "dtype", "scalar", "empty", "rename", "transpose"]


def _edit(state: dict[str, torch.Tensor], key: str, edit: str, r: int) -> None:
    """One structural change to a state dict: a key dropped or renamed, a tensor reshaped, retyped, emptied."""
    t = state[key]
    if edit == "drop":
        del state[key]
    elif edit == "reshape":
        shape = list(t.shape) or [1]
        shape[r % len(shape)] = max(0, shape[r % len(shape)] + r % 5 - 2)
        state[key] = torch.zeros(shape)
    elif edit == "dtype":
        state[key] = t.to([torch.float16, torch.int64, torch.bool, torch.bfloat16, torch.uint8][r % 5])
    elif edit == "scalar":
        state[key] = torch.tensor(1.0)
    elif edit == "empty":
        state[key] = torch.zeros(0)
    elif edit == "rename":
        state["x." + key if r % 2 else key.replace(".", "_", 1)] = state.pop(key)
    elif t.ndim >= 2:
        state[key] = t.transpose(0, 1).contiguous()


@pytest.fixture(scope="module")
def vit_state() -> dict[str, torch.Tensor]:
    """A timm ViT-Ti state dict at 32 px, 2 blocks, a 5-class head."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=5)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def test_fuzzed_state_dicts_load_or_fail_cleanly(tmp_path: Path, vit_state: dict[str, torch.Tensor]) -> None:
    """Valid files with the wrong contents: the loader, the model build and a forward pass either work
    or give the one-line error."""
    from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint

    path = tmp_path / "w.safetensors"
    keys = sorted(vit_state)

    @settings(BUDGET, max_examples=80)
    @given(edits=st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(EDITS), st.integers(0, 10**6)),
                          min_size=1, max_size=4), strict=st.booleans())
    def check(edits, strict: bool) -> None:
        state = dict(vit_state)
        for key, edit, r in edits:
            if key in state:
                _edit(state, key, edit, r)
        save_file(state, path)
        try:
            loaded = load_checkpoint(path, strict=strict)
            model = build_model_from_checkpoint(loaded)
            with torch.inference_mode():
                model(torch.randn(1, 3, *loaded.config.image_size))
        except VitcliError as e:
            assert e.source == str(path)

    check()
