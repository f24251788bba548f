"""Every file a run will write, planned in one place and checked before anything is computed.

Both front ends get the check from here: each API command calls `check_outputs_first` before its
first forward pass, and the CLI calls it too before the model loads. The files planned: each
output named (a path; `True` computes without writing; '-' is standard output) and the ones they
imply: -o's index beside it for several images (`vitcli.io.batch.index_path`), --rollout's
picture beside it (`rollout_png_path`), and for --output-dir every file under the folder (its
commit swaps the folder whole). None of them may be an input, nor two of them one file.
"""

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vitcli.api.base import ModelSpec
    from vitcli.api.images import Images

# API keyword of every output that names a file → the CLI option (the name errors use).
OUTPUT_OPTIONS = {"output": "-o", "grid_png": "--grid-png", "png": "--png", "similarity": "--similarity",
                  "rollout": "--rollout", "distance": "--distance", "plot_distance": "--plot-distance",
                  "masks": "--masks", "cosine": "--cosine", "save_qkv": "--save-qkv", "overlay": "--overlay",
                  "plot": "--plot"}


def rollout_png_path(npy: str) -> str | None:
    """Where the rollout map picture goes: beside the .npy, with .png; none for standard output
    (a file the user did not name is never written)."""
    return str(Path(npy).with_suffix(".png")) if npy != "-" else None


def check_stdout(named: Mapping[str, object], as_json: bool = False) -> None:
    """At most one output may be `-` (standard output), and none beside `as_json` (the shell's --json,
    which puts only its JSON there): a UsageError naming the second one."""
    from vitcli.errors import UsageError

    on_stdout = [opt for name, opt in OUTPUT_OPTIONS.items() if named.get(name) == "-"]
    if on_stdout and as_json:
        raise UsageError(f"{on_stdout[0]} -", "--json puts only JSON on standard output: write this output to a file")
    if len(on_stdout) > 1:
        raise UsageError(f"{on_stdout[1]} -",
                         f"{on_stdout[0]} - also writes to standard output: give one of them a file")


def planned_files(named: Mapping[str, object], many: bool = False) -> dict[str, str]:
    """Option → path of every file the run writes: the outputs named and the files they imply."""
    files: dict[str, str] = {}
    for key, opt in OUTPUT_OPTIONS.items():
        value = named.get(key)
        if isinstance(value, str) and value:  # True computes without writing
            files[opt] = value
    out = files.get("-o")
    if many and out and out != "-" and not out.lower().endswith(".parquet"):
        from vitcli.io.batch import index_path

        files["-o's index"] = index_path(out)
    picture = rollout_png_path(files.get("--rollout", "-"))
    if picture:
        files["--rollout's picture"] = picture
    return files


def check_outputs_first(named: Mapping[str, object], *, inputs: Iterable[object] = (), many: bool = False,
                        output_dir: str | None = None) -> dict[str, str]:
    """Every planned file's folder and name, no two on one file, none of them an input and no input
    inside --output-dir: one line before anything is computed or written. Returns the plan."""
    from vitcli.io.checks import check_outputs

    files = planned_files(named, many)
    check_outputs(files, {"--output-dir": output_dir} if output_dir else {}, inputs)
    return files


class OutputsMixin:
    """Mixed into `Model`: the output check with the model's own file (its weights) among the inputs."""

    spec: "ModelSpec"

    def check_outputs(self, images: "Images | None" = None, extra: Iterable[str] = (), *,
                      output_dir: str | None = None, **named: object) -> dict[str, str]:
        """`check_outputs_first` for a command over `images` (an `Images`) reading `extra` files too."""
        items = list(images.items) if images is not None else []
        return check_outputs_first(named, inputs=[self.spec.spec, *items, *extra], output_dir=output_dir,
                                   many=bool(images is not None and images.many))


__all__ = ["OUTPUT_OPTIONS", "OutputsMixin", "check_outputs_first", "check_stdout", "planned_files", "rollout_png_path"]
