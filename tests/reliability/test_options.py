"""Numeric options: range-checked whether or not the run uses them; ignored ones are usage errors (issue 15).

Generated from the app itself: for every command (and mode) and every numeric option it takes,
each out-of-range value of BAD is one line naming the option, exit 1, before any work, also when
the mode would not read the option. An option given explicitly that the chosen mode ignores
(IGNORED: `--grid-size` without `--unpatchify`, `--start-layer` without `--rollout`, …) is a usage
error: exit 2, one line naming it and what it works with. The same options where they are read run.
"""

from pathlib import Path

import numpy as np
import pytest
import typer

from tests.conftest import assert_clean_error
from tests.reliability.corpus import ROOT
from tests.reliability.helpers import run_batch

IMAGE = str(ROOT / "sample_images" / "chelsea.jpg")
TINY = ["--dim", "64", "--depth", "2", "--heads", "2"]

# out-of-range values, from each option's help (depth 2 for the layer options)
BAD = {
    "--patch-size": ["0", "-3"], "--dim": ["0", "-64"], "--depth": ["0", "-1"], "--heads": ["0"],
    "--mlp-ratio": ["0", "-1", "nan"], "--eps": ["0", "-1e-6", "nan"], "--max-pixels": ["0", "-1"],
    "--max-patches": ["0"], "--k": ["-1", "nan", "inf"], "--norm-threshold": ["-1", "nan"], "--top": ["0"],
    "--start-layer": ["-5", "7"], "--discard-ratio": ["-0.5", "1", "nan"], "--threshold": ["0", "1.5", "nan"],
    "--size": ["0", "0x0", "-5x3"], "--grid-size": ["0x0", "3x0"], "--grid": ["0x5"], "--native-size": ["0x0"],
    "--batch-size": ["0", "-2"], "--workers": ["-1"], "--shard-size": ["0"], "--actors": ["0"],
    "--num-gpus": ["-1", "nan"], "--count": ["0"], "--foreground-threshold": ["-0.1", "1", "nan"],
    "--layer": ["-100", "100"], "--target": ["-1"],
}
# command (and mode) → the arguments of a run that works
MODES = {
    "patchify": ["patchify", IMAGE], "unpatchify": ["patchify", "--unpatchify", "{npy}", "-o", "{tmp}/back.png"],
    "embed": ["embed", IMAGE, *TINY], "posenc": ["posenc", *TINY], "rope": ["posenc", "--kind", "rope", "--dim", "64"],
    "attend": ["attend", IMAGE, *TINY], "info": ["info", *TINY],
    **{f"explain {m}": ["explain", IMAGE, *TINY, "--method", m] for m in ("grad-rollout", "attn-grad", "gradcam", "rollout",
                                                                              "legrad")},
    "figures filters": ["figures", "filters", *TINY], "figures pca": ["figures", "pca", IMAGE, *TINY],
    "figures similar": ["figures", "similar", IMAGE, *TINY], "figures norms": ["figures", "norms", IMAGE, *TINY],
    "view": ["view", IMAGE, *TINY, "-o", "{tmp}/v.html"],
}
# mode → (option, a valid value) that the mode ignores, and a run that reads it (None: not tried here)
ROLLOUT, EXPLAIN = ["attend", IMAGE, *TINY, "--rollout", "{tmp}/r.npy"], ["explain", IMAGE, *TINY, "--method"]
IGNORED = {
    "patchify": [("--grid-size", "14x14", ["patchify", "--unpatchify", "{npy}", "-o", "{tmp}/b.png"])],
    "unpatchify": [(o, v, None) for o, v in (("--size", "224"), ("--patch-size", "16"), ("--max-pixels", "1000000"),
                                           ("--max-patches", "196"))],
    "attend": [("--start-layer", "1", ROLLOUT), ("--discard-ratio", "0.5", ROLLOUT),
               ("--threshold", "0.5", ["attend", IMAGE, *TINY, "--masks", "{tmp}/m.npy"])],
    "explain gradcam": [("--start-layer", "1", [*EXPLAIN, "all"]), ("--discard-ratio", "0.5", [*EXPLAIN, "rollout"])],
    "explain grad-rollout": [("--layer", "0", [*EXPLAIN, "gradcam"]), ("--discard-ratio", "0.5", [*EXPLAIN, "attn-grad"])],
    "explain rollout": [("--layer", "0", [*EXPLAIN, "all"])],
    "explain legrad": [("--layer", "0", [*EXPLAIN, "gradcam"]), ("--discard-ratio", "0.5", [*EXPLAIN, "rollout"])],
    "rope": [(o, v, None) for o, v in (("--size", "224"), ("--patch-size", "16"), ("--positions", "0:3"),
                                     ("--resample", "4x4"), ("--layer", "0"), ("--patch", "1,1"), ("--depth", "2"),
                                     ("--heads", "2"), ("--mlp-ratio", "2"), ("--eps", "1e-6"), ("--native-size", "224x224"))],
    "figures norms": [("--k", "3", ["figures", "norms", IMAGE, *TINY])],  # ignored with --norm-threshold (EXTRA)
    "view": [("--target", "3", None)],  # read with --explain (needs the explain feature's weights)
    "embed": [("--shard-size", "5", None), ("--actors", "2", None), ("--num-gpus", "1", None)],  # sharded / Ray runs
}
# no model to bound it: rope's --layer is refused as ignored (exit 2) whatever its value
UNBOUNDED = {("rope", "--layer")}
EXTRA = {"figures norms": ["--norm-threshold", "5"]}  # what makes the option of IGNORED ignored


def _options(words: list[str]) -> set[str]:
    """Every long option of the command that `words` run (from the typer app)."""
    from vitcli.cli import app

    command = typer.main.get_command(app)
    for word in words:
        if word.startswith("-") or not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
    return {o for p in command.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")}


def _fill(args: list[str], tmp_path: Path) -> list[str]:
    return [a.format(tmp=tmp_path, npy=tmp_path / "patches.npy") for a in args]


@pytest.fixture
def patches(tmp_path: Path) -> Path:
    """A (196, 768) uint8 patch array: what `patchify` of a 224×224 image writes."""
    np.save(tmp_path / "patches.npy", np.random.default_rng(0).integers(0, 256, (196, 768), dtype=np.uint8))
    return tmp_path / "patches.npy"


def _posenc_resample(mode: str, option: str) -> bool:
    """posenc's --resample is a grid ROWSxCOLS; elsewhere --resample is a filter name (not numeric)."""
    return option != "--resample" or MODES[mode][0] == "posenc"


@pytest.mark.slow  # about 30 s; test_an_option_the_mode_ignores_is_a_usage_error stays quick
def test_every_numeric_option_is_range_checked_used_or_not(tmp_path: Path, patches: Path) -> None:
    cases = []
    for mode, args in MODES.items():
        for option in sorted(_options(args) & {*BAD, "--resample"}):
            if not _posenc_resample(mode, option):
                continue
            for bad in BAD.get(option, ["0x0"]):
                cases.append((_fill([*args, *EXTRA.get(mode, []), f"{option}={bad}"], tmp_path), option,
                              2 if (mode, option) in UNBOUNDED else 1))
    assert len(cases) > 300
    failed = []
    for (args, option, code), result in zip(cases, run_batch([a for a, _, _ in cases], tmp_path)):
        try:
            line = assert_clean_error(result, option, code=code)
            assert "internal error" not in line and "None" not in line, line
        except AssertionError as e:
            failed.append((args[:2], option, args[-1], str(e).splitlines()[0][:160]))
    assert not failed, "\n".join(map(str, failed))


def test_an_option_the_mode_ignores_is_a_usage_error(tmp_path: Path, patches: Path) -> None:
    refused, reads = [], []
    for mode, options in IGNORED.items():
        for option, good, reader in options:
            refused.append((_fill([*MODES[mode], *EXTRA.get(mode, []), option, good], tmp_path), option))
            if reader is not None:  # the same value where it is read
                reads.append(_fill([*reader, option, good, "-q"], tmp_path))
    results = run_batch([a for a, _ in refused] + reads, tmp_path)
    for (args, option), result in zip(refused, results):
        line = assert_clean_error(result, option, " with ", code=2)  # "works with …", "use it with …"
        assert "internal error" not in line, line
    for args, result in zip(reads, results[len(refused):]):
        assert result.returncode == 0, (args, result.stderr.decode())
