"""Memory is bounded before anything is allocated: requests over the limit, endless streams, files
larger than what they can hold, checkpoints that describe more than they hold.

Each class runs its generated cases in one child process (tests/reliability/driver.py, or the CLI
itself when standard input matters) and asserts, per case: exit code 1, exactly one line on
standard error naming the option or file, nothing written; and for the child: its peak resident
memory (wait4's ru_maxrss) under a bound that the naive code (allocate, then fail or be killed)
exceeds many times. Needs are computed here by hand from the formulas in the comments, never
taken from vitcli. `--max-memory` fixes the limit, so no case depends on this machine's memory.
"""

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.reliability.corpus import ROOT, SAMPLES
from tests.reliability.helpers import PREVIOUS, assert_untouched, output_slot

IMAGE = str(SAMPLES / "chelsea.jpg")
MiB, GiB = 1 << 20, 1 << 30
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}


def _measured(command: list, tmp_path: Path, limit_as: int | None = None, timeout: float = 240, **popen) -> tuple[int, int]:
    """Exit code and peak RSS (bytes) of `command`, started by tests/reliability/measure.py (see there
    why not from pytest itself); killed after `timeout` (a hang)."""
    report = tmp_path / f"measure-{os.getpid()}-{id(command)}.json"
    limit = ["--address-space", str(limit_as)] if limit_as else []
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.measure", report, *limit, "--",
                             *map(str, command)], cwd=ROOT, env=ENV, **popen)
    try:
        proc.wait(timeout)
    finally:
        proc.kill()
    done = json.loads(report.read_text())
    report.unlink()
    return done["code"], done["peak"]


def run_measured(cases: list[list[str]], tmp_path: Path, limit_as: int | None = None) -> tuple[list[dict], int]:
    """Every case through vitcli.cli.main() in one child; the results in order and the child's peak RSS."""
    (tmp_path / "cases.json").write_text(json.dumps([[str(a) for a in c] for c in cases]))
    code, peak = _measured([sys.executable, "-m", "tests.reliability.driver", tmp_path / "cases.json",
                            tmp_path / "results.json"], tmp_path, limit_as)
    assert code == 0, code
    return json.loads((tmp_path / "results.json").read_text()), peak


def run_cli_measured(args: list[str], stdin, tmp_path: Path, timeout: float = 120) -> tuple[int, str, int]:
    """`python -m vitcli ARGS` with `stdin` (a file or a pipe): exit code, stderr, peak RSS."""
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as e:
        code, peak = _measured([sys.executable, "-m", "vitcli", *args], tmp_path, None, timeout, stdin=stdin,
                               stdout=subprocess.DEVNULL, stderr=e)
    return code, err.read_text(), peak


def assert_refused(result: dict, *words: str) -> str:
    """Exit 1, one stderr line naming `words`, no traceback, nothing on standard output."""
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert result["code"] == 1, result
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result["stdout"] == ""
    return lines[0]


def _tiny_state(depth: int = 2) -> dict[str, torch.Tensor]:
    """A timm ViT-Ti state dict at 32 px (random weights)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=depth, num_classes=0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# ---- sizes: refused before the model, the image or the forward pass is allocated ------------------

def _params_vit(d: int, m: int, depth: int, p: int = 16, tokens: int = 197) -> int:
    """A plain ViT's parameters: patch (D·3·P² + D), table T·D, per block 4D² + 2DM (+ biases and norms)."""
    return d * 3 * p * p + d + tokens * d + depth * (4 * d * d + 2 * d * m + 9 * d + m)


def size_cases(tmp_path: Path) -> list[tuple[list[str], str, int]]:
    """(arguments, the option named, the need by hand in bytes) with a 1 GiB limit; every need is far over it."""
    tiny = tmp_path / "tiny.safetensors"
    save_file(_tiny_state(), tiny)
    t896 = (896 // 16) ** 2 + 1  # 3137 tokens
    cases = [
        (["embed", IMAGE, "--size", "100000"], "--size", 100000 * 100000 * 3),  # the resized image alone
        (["patchify", IMAGE, "--size", "100000"], "--size", 100000 * 100000 * 3),
        (["embed", IMAGE, "--depth", "10000"], "--depth", 4 * _params_vit(768, 3072, 10000)),  # 264 GiB
        (["embed", IMAGE, "--dim", "4096", "--heads", "64"], "--dim", 4 * _params_vit(4096, 16384, 12)),  # 9 GiB
        (["embed", IMAGE, "--mlp-ratio", "400"], "--mlp-ratio", 4 * 12 * 2 * 768 * 307200),  # 21 GiB
        (["attend", IMAGE, "--depth", "5000"], "--depth", 4 * _params_vit(768, 3072, 5000)),
        # patch 1 at 224: 50,177 tokens × (at least the residual, qkv and MLP hidden: D + 3D + 4D) × 4 B
        (["embed", IMAGE, "--patch-size", "1"], "--patch-size", 50177 * 8 * 768 * 4),
        # 5 images of 1344 at once under 2 GiB: 5 × 7057 tokens × (15D + 4M) × 4 B = 3.3 GiB (the
        # estimate's activations); one image alone fits. No hand lower bound reaches 2 GiB here.
        (["embed", str(SAMPLES), "--size", "1344", "--batch-size", "64", "--max-memory", "2G"], "--batch-size", None),
        # every query row of every layer kept: 12 layers × 12 heads × 3137² × 4 B = 5.3 GiB
        (["attend", IMAGE, "--model", "vit-ti16", "--heads", "12", "--size", "896", "--query", "all", "--layer", "all"],
         "--query", 12 * 12 * t896 * t896 * 4),
        # a checkpoint's inferred config: 8192 px → 262,145 tokens × 8·192 × 4 B = 1.5 GiB
        (["embed", IMAGE, "--weights", tiny, "--size", "8192"], "--size", 262145 * 8 * 192 * 4),
        # figures: 4480 px → 78,401 tokens × 8·192 × 4 B = 0.45 GiB at least; the estimate's (15D + 4M) is
        # 2.2 GiB. No hand lower bound reaches 1 GiB here either.
        (["figures", "pca", IMAGE, "--model", "vit-ti16", "--size", "4480"], "--size", None),
        # posenc: a learned table needs the draws of its model's weights (depth 100,000: 2.6 TiB)
        (["posenc", "--depth", "100000"], "--depth", 4 * _params_vit(768, 3072, 100000)),
        (["posenc", "--kind", "sincos2d", "--grid", "20000x20000"], "--grid", 20000 * 20000 * 768 * 8),
        (["posenc", "--kind", "sincos2d", "--grid", "200x200", "--similarity", "SIM"], "--similarity", 40000**2 * 8),
    ]
    return cases


def test_requests_over_the_limit_are_refused_before_allocation(tmp_path: Path) -> None:
    cases = size_cases(tmp_path)
    for _, _, need in cases:
        assert need is None or need > GiB  # the hand computation says each is over the limit the cases set
    slots = [output_slot(tmp_path / f"slot{i}") for i in range(len(cases))]
    runs = []
    for (args, _, _), out in zip(cases, slots):
        args = [out.parent / "sim.png" if a == "SIM" else a for a in args]
        limit = [] if "--max-memory" in args else ["--max-memory", "1G"]
        runs.append([*args, "-o", out, *limit])
    results, peak = run_measured(runs, tmp_path)
    for (args, option, _), result, out in zip(cases, results, slots):
        limit = "2 GiB" if "2G" in args else "1 GiB"
        line = assert_refused(result, option, f"over the memory limit of {limit}", "--max-memory")
        assert line.startswith(f"vitcli: error: {option}:"), line
        assert_untouched(out)
    # the whole child (torch imported, 14 refusals) stays near its start-up size; allocating any one
    # case would need more than a gigabyte, most of them hundreds
    assert peak < 1.5 * GiB, peak / GiB


def test_the_limit_is_a_real_bound_not_a_blanket_refusal(tmp_path: Path) -> None:
    """Under the same limit, requests that fit run; --max-memory is accepted anywhere and checked."""
    out = tmp_path / "e.npy"
    results, _ = run_measured([
        ["embed", IMAGE, "--model", "vit-ti16", "--size", "448", "--max-memory", "1G", "-o", out, "-q"],
        ["--max-memory=1G", "posenc", "--kind", "sincos2d", "-q"],
        ["embed", IMAGE, "--max-memory", "lots"],
        ["embed", IMAGE, "--max-memory", "0"],
    ], tmp_path)
    assert [r["code"] for r in results[:2]] == [0, 0], results[:2]
    assert out.stat().st_size > 0
    assert_refused(results[2], "--max-memory", "'lots' is not a size")
    assert_refused(results[3], "--max-memory", "not a positive size")


@pytest.mark.slow  # about 14 s; the gradient estimate's grad-rollout case stays quick
def test_the_estimate_bounds_what_a_forward_pass_really_takes(tmp_path: Path) -> None:
    """embed of ViT-S/16 at 896 px: the measured peak growth stays under the estimate the refusals use."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak RSS")
    from vitcli.core.budget import forward_bytes, weight_bytes
    from vitcli.core.presets import PRESETS

    warmup = ["embed", IMAGE, "--model", "vit-s16", "-q"]
    measured = ["embed", IMAGE, "--model", "vit-s16", "--size", "896", "-q"]
    (tmp_path / "w.json").write_text(json.dumps(warmup))
    (tmp_path / "m.json").write_text(json.dumps(measured))
    done = subprocess.run([sys.executable, "-m", "tests.reliability.peak_rss", tmp_path / "w.json", tmp_path / "m.json"],
                          capture_output=True, env=ENV, cwd=ROOT, timeout=300)
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["codes"] == [0, 0], done.stderr.decode()
    c = PRESETS["vit-s16"]
    estimate = weight_bytes(c) + forward_bytes(c, 1, (896, 896))
    assert report["growth"] < estimate, (report["growth"] / MiB, estimate / MiB)


def test_posenc_draws_a_learned_table_without_building_the_model(tmp_path: Path) -> None:
    """posenc --dim 2048: the whole model would be 12 × (4D² + 8D²) × 4 B = 2.25 GiB; the table is 1.6 MB."""
    out = tmp_path / "pos.npy"
    results, peak = run_measured([["posenc", "--dim", "2048", "-o", out, "-q"]], tmp_path)
    assert results[0]["code"] == 0, results[0]
    assert peak < 1.5 * GiB, peak / GiB


def test_the_learned_table_is_the_one_the_model_holds() -> None:
    from vitcli.core.presets import PRESETS, build_model, learned_table, override

    configs = [override(PRESETS["vit-ti16"], depth=2), override(PRESETS["vit-s16"], depth=1, class_token=False),
               PRESETS["vit-ti16"].with_changes(depth=1, num_registers=4, distilled=True, image_size=(64, 96))]
    for c in configs:
        for seed in (0, 7):
            assert torch.equal(learned_table(c, seed), build_model(c, seed).pos_embed.detach()[0])


def test_api_keywords_name_themselves() -> None:
    import vitcli
    from vitcli.errors import VitcliError

    with pytest.raises(VitcliError, match=r"^depth: .*max_memory='16G'"):
        vitcli.load_model("vit-b16", depth=10000, max_memory="8G").embed(IMAGE)
    with pytest.raises(VitcliError, match=r"^size: a 100000×100000 image needs"):
        vitcli.patchify(vitcli.load_images(IMAGE, size=100000, max_memory="1G"))
    with pytest.raises(VitcliError, match=r"^max_memory: "):
        vitcli.load_model("vit-ti16", max_memory="-3")


def test_parse_memory_and_the_default_limit() -> None:
    from vitcli.core import budget

    assert budget.parse_memory("8G") == 8 * GiB
    assert budget.parse_memory("500M") == 500 * MiB
    assert budget.parse_memory("1.5GiB") == 3 * GiB // 2
    assert budget.parse_memory("123456") == 123456
    for bad in ("0", "-1G", "8X", "", "G"):
        with pytest.raises(ValueError):
            budget.parse_memory(bad)
    assert budget.memory_limit("2G") == 2 * GiB
    budget.set_process_limit(3 * GiB)  # the CLI's --max-memory: the default of everything not given its own
    try:
        assert budget.memory_limit() == 3 * GiB and budget.memory_limit(GiB) == GiB
    finally:
        budget.set_process_limit(None)
    room = budget.available_memory()  # MemAvailable, or the cgroup's room
    assert room is None or 0 < room <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_the_parameter_bound_holds_every_built_model() -> None:
    """The memory check's parameter count (formula_params bound=True) is at least what the built model
    holds, counted on the meta device, for every preset and the parts outside the plain formula, and
    at most 1.5% over it (a loose bound would refuse models that fit)."""
    import torch

    from vitcli.core.encoder import VisionTransformer
    from vitcli.core.presets import PRESETS, count_params, formula_params

    base = PRESETS["vit-ti16"]
    variants = [*PRESETS.values(), base.with_changes(mlp="swiglu", mlp_dim=512), base.with_changes(qk_norm=True),
                base.with_changes(rel_pos_bias="layer", posenc="none"), base.with_changes(pooling="map"),
                base.with_changes(layer_scale=True, attn_norm=True, mlp_norm=True)]
    for c in variants:
        with torch.device("meta"):
            built = count_params(VisionTransformer(c))
        assert built <= formula_params(c, bound=True) < 1.015 * built + 20_000, c


@pytest.mark.slow  # about 10 s; the in-process allocator error stays quick
def test_out_of_memory_inside_torch_is_the_out_of_memory_line(tmp_path: Path) -> None:
    """A forward pass over an address-space limit: torch's allocator fails (a RuntimeError, or numpy's
    MemoryError first); either way the one out-of-memory line, exit 1."""
    # 8960 px: 313,601 tokens; qkv alone is 313,601 × 2304 × 4 B = 2.7 GiB, over a 4 GiB address space
    # with torch loaded; the budget is lifted so that the allocation is really tried
    results, _ = run_measured([["embed", IMAGE, "--model", "vit-b16", "--size", "8960", "--max-memory", "1T", "-q"]],
                              tmp_path, limit_as=4 * GiB)
    assert_refused(results[0], "out of memory")


def test_a_torch_allocator_error_is_not_an_internal_error(monkeypatch, capsys) -> None:
    from vitcli.cli import main
    import vitcli.api.embed as embed_api

    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(embed_api.EmbedMixin, "embed", fail)
    monkeypatch.setattr(sys, "argv", ["vitcli", "embed", IMAGE, "--model", "vit-ti16"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0] and "internal error" not in err[0], err


# ---- streams and files larger than what they can hold ----------------------------------------

def test_huge_files_and_endless_streams_stop_at_a_bound(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # a 3 GB sparse file: no disk used, 3 GB if read whole
        f.truncate(3 * 10**9)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(_tiny_state(), folder / "model.safetensors")
    with open(folder / "config.json", "wb") as f:
        f.truncate(2 * 10**9)  # a config is kilobytes
    shards = tmp_path / "shards"
    shards.mkdir()
    with open(shards / "model.safetensors.index.json", "wb") as f:
        f.truncate(2 * 10**9)
    out = output_slot(tmp_path / "slot")
    results, peak = run_measured([
        ["patchify", big, "-o", out],
        ["embed", big, "--model", "vit-ti16", "-o", out],
        ["info", "--weights", folder],
        ["info", "--weights", shards],
        ["embed", "--from-list", "/dev/zero", "-o", out],
    ], tmp_path)
    assert_refused(results[0], str(big), "--max-pixels")
    assert_refused(results[1], str(big), "--max-pixels")
    assert_refused(results[2], str(folder / "config.json"), "more than a config file can")
    assert_refused(results[3], "model.safetensors.index.json", "more than a shard index can")
    assert_refused(results[4], "/dev/zero", "is a device")
    assert_untouched(out)
    assert peak < 1.5 * GiB, peak / GiB  # reading any one file whole: 2-3 GB


@pytest.mark.parametrize("case", ["zero-pipe", "png-then-zeros", "zero-device", "long-line", "endless-lines"])
def test_standard_input_is_read_under_a_bound(case: str, tmp_path: Path) -> None:
    """`patchify - < /dev/zero`, `cat /dev/zero | patchify -`, a list of endless lines on standard input."""
    feeder = None
    if case == "zero-device":
        stdin, args, words = open("/dev/zero", "rb"), ["patchify", "-"], ["-: standard input is a device"]
    elif case == "zero-pipe":  # no format starts with zeros: refused after the first 64 KiB, not at the 683 MiB cap
        feeder = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
        stdin, args, words = feeder.stdout, ["patchify", "-"], ["-: standard input is not an image", "Pillow"]
    elif case == "png-then-zeros":  # starts like a PNG: the cap stops it (--max-pixels 100,000 → 1.76 MiB)
        feeder = subprocess.Popen(["sh", "-c", r"printf '\211PNG\r\n\032\n'; cat /dev/zero"], stdout=subprocess.PIPE)
        stdin, args, words = feeder.stdout, ["patchify", "-", "--max-pixels", "100000"], ["-: more than", "--max-pixels"]
    elif case == "long-line":
        feeder = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
        stdin, args, words = feeder.stdout, ["patchify", "--from-list", "-"], ["-: line 1 is longer than 4096 bytes"]
    else:
        feeder = subprocess.Popen(["yes", "#"], stdout=subprocess.PIPE)  # comment lines, without end
        stdin, args, words = feeder.stdout, ["patchify", "--from-list", "-"], ["-: more than 10,000,000 lines"]
    try:
        code, err, peak = run_cli_measured(args, stdin, tmp_path)
    finally:
        if feeder is not None:
            feeder.kill()
            feeder.wait()
        stdin.close()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert peak < 400 * MiB, peak / MiB  # patchify imports no torch; the naive read never ends


def test_a_large_file_that_is_not_an_image_is_not_read_whole(tmp_path: Path) -> None:
    """A 600 MiB sparse file of zeros, under the default cap (683 MiB): refused from its first 64 KiB
    (the naive read takes 600 MiB, and 1.2 GB with the join)."""
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(600 * MiB)
    code, err, peak = run_cli_measured(["patchify", big], subprocess.DEVNULL, tmp_path)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "big.png: not an image" in lines[0], err
    assert peak < 400 * MiB, peak / MiB


def _encoded(fmt: str, mode: str) -> bytes:
    """A 40×56 random image in `fmt` (the formats the tests use, and TGA: no signature, Pillow's parser decides)."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(3).integers(0, 256, (40, 56, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


STDIN_FORMATS = [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "P"), ("JPEG", "RGB"), ("JPEG", "L"),
                 ("GIF", "P"), ("WEBP", "RGB"), ("TIFF", "RGB"), ("BMP", "RGB"), ("PPM", "RGB"), ("TGA", "RGB")]


@pytest.mark.slow  # about 18 s; the bounded standard-input cases stay quick
def test_every_image_format_still_loads_from_standard_input(tmp_path: Path) -> None:
    for fmt, mode in STDIN_FORMATS:
        out = tmp_path / f"{fmt}-{mode.replace(';', '')}.npy"
        done = subprocess.run([sys.executable, "-m", "vitcli", "patchify", "-", "--size", "32", "-o", out, "-q"],
                              input=_encoded(fmt, mode), capture_output=True, cwd=ROOT, env=ENV, timeout=120)
        assert done.returncode == 0, (fmt, mode, done.stderr.decode())
        assert np.load(out).shape == (4, 768), (fmt, mode)


# ---- checkpoints that describe more than they hold --------------------------------------------

def _many_entries(path: Path, decoys: int) -> None:
    """A TorchScript-shaped archive after `decoys` decoy `dN/data.pkl` entries (each a candidate top
    folder: a list search per candidate made the scan quadratic, minutes for 100,000)."""
    with zipfile.ZipFile(path, "w") as z:
        for i in range(decoys):
            z.writestr(f"d{i}/data.pkl", b"")
        z.writestr("archive/data.pkl", pickle.dumps(()))
        z.writestr("archive/constants.pkl", pickle.dumps(()))
        z.writestr("archive/code/__torch__.py", "")


def _inflating_torchscript(path: Path, inflated: int) -> None:
    """A real torch.jit.save archive whose first storage is replaced by `inflated` bytes of zeros,
    deflated (a few MB on disk); data.pkl still uses it, so a naive reader inflates and copies it."""
    src = path.with_name("src.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(src))
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        storages = sorted(n for n in zin.namelist() if "/data/" in n)
        for info in zin.infolist():
            if info.filename != storages[0]:
                zout.writestr(info, zin.read(info))
                continue
            member = zipfile.ZipInfo(info.filename)
            member.compress_type = zipfile.ZIP_DEFLATED
            with zout.open(member, "w", force_zip64=True) as f:
                chunk = bytes(16 * MiB)
                for _ in range(inflated // len(chunk)):
                    f.write(chunk)
    src.unlink()


@pytest.mark.slow  # about 30 s
def test_checkpoints_that_describe_more_than_they_hold(tmp_path: Path) -> None:
    state = _tiny_state()
    junk = tmp_path / "junk.safetensors"
    save_file({**state, "blocks.10000000.junk": torch.zeros(1)}, junk)  # depth by largest index: 10M blocks
    deep = tmp_path / "deep.safetensors"  # 4,998 blocks named by one 1-element qkv weight each
    save_file({**state, **{f"blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(2, 5000)}}, deep)
    many = tmp_path / "many.safetensors"  # 25,000 keys: more than any ViT
    save_file({**state, **{f"extra.k{i}": torch.zeros(1) for i in range(25000)}}, many)
    scan = tmp_path / "entries.pt"
    _many_entries(scan, 100_000)
    bomb = tmp_path / "bomb.pt"
    _inflating_torchscript(bomb, 1 * GiB)
    assert bomb.stat().st_size < 3 * MiB
    indexes = {}
    for name, weight_map in [("self", {"a": "model.safetensors.index.json"}), ("types", {"a": 3}),
                             ("list", ["a"]), ("elsewhere", {"a": "../junk.safetensors"})]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        indexes[name] = folder / "model.safetensors.index.json"
    out = output_slot(tmp_path / "slot")
    cases = [
        (["embed", IMAGE, "--weights", junk, "-o", out], [str(junk), "blocks.10000000.junk", "--no-strict"]),
        (["embed", IMAGE, "--weights", deep, "-o", out], [str(deep), "describes a model of 5,000 blocks"]),
        (["info", "--weights", many], [str(many), "holds 25,030 tensors"]),
        (["info", "--weights", scan], [str(scan), "holds no tensors"]),
        (["embed", IMAGE, "--weights", bomb, "--max-memory", "256M", "-o", out], [str(bomb), "needs 1 GiB", "256 MiB"]),
        (["embed", IMAGE, "--weights", bomb, "-o", out], [str(bomb)]),  # under the default limit: read once, then
        #                                                                  refused as no ViT
        *[(["info", "--weights", p], [str(p), "shard"]) for p in indexes.values()],
    ]
    results, peak = run_measured([args for args, _ in cases], tmp_path)
    for (args, words), result in zip(cases, results):
        assert_refused(result, *words)
    assert_untouched(out)
    assert out.read_bytes() == PREVIOUS
    # the bomb read whole and copied is 2 GiB (measured before: 2.7 GB peak); ten million blocks on
    # the meta device never finish. Read once into one buffer, under the default limit: 1 GiB more.
    assert peak < 2.2 * GiB, peak / GiB
    # what the file does hold is still usable: its 2 real blocks, the junk key ignored
    ok, _ = run_measured([["info", "--weights", junk, "--no-strict", "--json"]], tmp_path)
    assert ok[0]["code"] == 0, ok[0]
    assert json.loads(ok[0]["stdout"])["model"]["depth"] == 2
