"""Reading tensors from checkpoint files without ever running code that comes with them.

Formats:
  .safetensors   `safetensors.safe_open` (memory-mapped; a JSON header and raw bytes, no code);
                 a Hugging Face folder or a sharded `*.safetensors.index.json` is read shard by shard;
  .pth/.pt/.bin  `torch.load(weights_only=True, mmap=True)`: torch's restricted unpickler only
                 rebuilds tensors and plain containers; a pickle that names any other global
                 (os.system, a class with `__reduce__`, argparse.Namespace…) is refused before
                 anything is called, and we say so. Old (pre-zip) files are read without mmap.
  TorchScript    (OpenAI CLIP's `ViT-B-32.pt`, torch.jit.save archives). `torch.jit.load` would
                 compile the archive's TorchScript code and run any `__setstate__` it defines:
                 not Python, but still code from the file. We do not call it. The archive's
                 `data.pkl` is read with our own allow-list unpickler: `__torch__.*` module
                 classes become inert attribute bags, tensors are rebuilt from the raw storages
                 in `data/`, and any other global is refused. The tensors found by walking the
                 module tree are exactly `torch.jit.load(path).state_dict()` (tested).

Checkpoints nested under `state_dict` / `model` / `module` / `teacher` / … and wrapper prefixes
(`module.`, `_orig_mod.`) are unwrapped here; family-specific roots (`visual.`, `vit.`, …) are
the families' business.
"""

import io
import pickle
import re
import stat
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitcli.checkpoints.bounds import (
    MAX_CONFIG_BYTES,
    MAX_INDEX_BYTES,
    MAX_PICKLE_BYTES,
    check_declared_sizes,
    check_key_count,
    parse_json,
    read_member,
    read_text_capped,
)
from vitcli.errors import VitcliError

if TYPE_CHECKING:  # torch is imported where tensors are made: describing a safetensors file needs none
    from torch import Tensor

# Folder contents tried in this order (Hugging Face, timm and open_clip hub names).
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
CONFIG_FILES = ("config.json", "open_clip_config.json", "preprocessor_config.json")
# Keys under which training scripts nest the weights, in the order they are looked for.
NESTING = ("state_dict", "model_state_dict", "model", "module", "net", "network", "teacher", "model_ema",
           "state_dict_ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class RawCheckpoint:
    """Tensors as stored (source names), and how they were found."""

    path: str
    format: str  # "safetensors", "torch (weights_only)" or "torchscript"
    tensors: "dict[str, Tensor]"  # or ShapeTensors (shapes_only): shapes and dtypes, no values
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata
    configs: dict[str, dict] = field(default_factory=dict)  # config.json etc. found next to the weights
    nested_under: str = ""  # "teacher", "state_dict", …


def read_checkpoint(path: str | Path, shapes_only: bool = False) -> RawCheckpoint:
    """Read a file or a folder of weights; VitcliError(path, problem) for anything unreadable or unsafe.
    `shapes_only`: ShapeTensors (key → shape, dtype) from safetensors headers without torch, and from a
    torch file's memory map without reading its data (to describe a checkpoint, not run it)."""
    p = Path(path)
    if not p.exists():
        from vitcli.core.presets import PRESETS

        raise VitcliError(str(path), f"no such file or folder, nor a preset ({', '.join(PRESETS)})")
    folder = p if p.is_dir() else p.parent
    if p.is_dir():
        p = _weights_in_folder(p)
    raw = _read_file(p, shapes_only)
    if shapes_only:  # torch files are mmap'd: their shapes are taken, their data pages never touched
        from vitcli.checkpoints.shapes import ShapeTensor

        # ShapeTensors stand in for the tensors: the mapping reads only .shape and .dtype
        raw.tensors = {k: t if isinstance(t, ShapeTensor) else ShapeTensor.of(t)  # type: ignore[misc]
                       for k, t in raw.tensors.items()}
    raw.configs = read_configs(folder)
    return raw


def read_configs(folder: Path) -> dict[str, dict]:
    """config.json / open_clip_config.json / preprocessor_config.json in `folder`, parsed (bad JSON is
    skipped; a file larger than any config, MAX_CONFIG_BYTES, is refused unread)."""
    found = {}
    for name in CONFIG_FILES:
        f = folder / name
        if f.is_file():
            try:
                value = parse_json(read_text_capped(f, MAX_CONFIG_BYTES, "a config file"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(value, dict):
                found[name] = value
    return found


def _weights_in_folder(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    for pattern in ("*.safetensors.index.json", "*.safetensors", "*.pth", "*.pt", "*.bin"):
        hits = sorted(folder.glob(pattern))
        if len(hits) == 1:
            return hits[0]
    raise VitcliError(str(folder), f"no weights found in this folder (looked for {', '.join(WEIGHT_FILES)}, "
                      "or a single *.safetensors / *.pth / *.bin)")


def _read_file(p: Path, shapes_only: bool = False) -> RawCheckpoint:
    name = p.name.lower()
    if name.endswith(".safetensors.index.json"):
        return _read_sharded(p, shapes_only)
    head = _head(p)
    if len(head) < 8:
        raise VitcliError(str(p), "empty or truncated file")
    if name.endswith(".safetensors") or _looks_like_safetensors(p, head):
        return _read_safetensor_shapes(p) if shapes_only else _read_safetensors(p)
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                if _torchscript_prefix(z) is not None:
                    return RawCheckpoint(str(p), "torchscript", _read_torchscript(p, z))
                check_declared_sizes(p, z)  # torch's own zip: its members too, before torch inflates them
        except (VitcliError, MemoryError):
            raise
        except Exception as e:  # is_zipfile only finds the end record: a damaged directory or member fails
            #                     here (BadZipFile, UnicodeDecodeError, NotImplementedError, zlib.error, …)
            raise VitcliError(str(p), f"damaged zip archive ({type(e).__name__}: {_short(e)})") from None
    return _read_torch(p)


def _head(p: Path) -> bytes:
    """The first 8 bytes of a regular file; devices and pipes (/dev/zero never ends) are refused."""
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise VitcliError(str(p), "not a regular file: a device, pipe or socket cannot hold a checkpoint")
        with open(p, "rb") as f:
            return f.read(8)
    except PermissionError:
        raise VitcliError(str(p), "permission denied") from None
    except OSError as e:
        raise VitcliError(str(p), f"cannot read: {e.strerror or e}") from None


def _looks_like_safetensors(p: Path, head: bytes) -> bool:
    """A safetensors file starts with a little-endian u64 header length and a JSON '{'."""
    n = int.from_bytes(head, "little")
    if not 2 <= n <= 100_000_000 or n > p.stat().st_size:
        return False
    with open(p, "rb") as f:
        f.seek(8)
        return f.read(1) == b"{"


def _read_safetensors(p: Path) -> RawCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            check_key_count(p, len(f.keys()))  # from the header, before any tensor is made
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no Mapping
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VitcliError(str(p), f"not a readable safetensors file ({_short(e)})") from None
    return RawCheckpoint(str(p), "safetensors", tensors, metadata=metadata)


def _read_safetensor_shapes(p: Path) -> RawCheckpoint:
    """The header only (shapes.read_header): no tensor is made, torch is not imported."""
    from vitcli.checkpoints.shapes import read_header

    tensors, metadata = read_header(p)
    return RawCheckpoint(str(p), "safetensors", tensors, metadata=metadata)  # type: ignore[arg-type]


def _read_sharded(index: Path, shapes_only: bool = False) -> RawCheckpoint:
    """The shards a `*.safetensors.index.json` names: `.safetensors` files beside it, each read once."""
    try:
        weight_map = parse_json(read_text_capped(index, MAX_INDEX_BYTES, "a shard index"))["weight_map"]  # type: ignore[index]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise VitcliError(str(index), f"not a readable shard index ({_short(e)})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise VitcliError(str(index), "not a shard index: weight_map must map tensor names to shard file names")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if Path(shard).name != shard or not shard.endswith(".safetensors") or shard.endswith(".index.json"):
            raise VitcliError(str(index), f"names the shard {shard!r:.80}: shards are .safetensors files beside the "
                              "index (not the index itself, another index or a path elsewhere)")
    check_key_count(index, len(weight_map))
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        tensors.update(_read_file(index.parent / shard, shapes_only).tensors)
        check_key_count(index, len(tensors))
    return RawCheckpoint(str(index), "safetensors", tensors, notes=[f"{len(shards)} shards"])


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _read_torch(p: Path) -> RawCheckpoint:
    """torch.load with weights_only=True (mmap when the file allows); refused pickles never run."""
    import torch

    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                obj = torch.load(p, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
                notes.append("legacy torch format, read without mmap")
    except pickle.UnpicklingError as e:
        what = _GLOBAL.search(str(e))
        named = f" ({what.group(1)})" if what else ""
        raise VitcliError(str(p), f"refused: the pickle asks for Python objects beyond tensors{named}, which could "
                          "run code; it was not executed. If you trust the file, re-save its state dict as "
                          ".safetensors") from None
    except Exception as e:  # garbage makes the unpickler fail in many ways (IndexError, KeyError, …)
        raise VitcliError(str(p), f"not a readable torch checkpoint ({type(e).__name__}: {_short(e)})") from None
    tensors, nested = _find_state_dict(obj, str(p))
    check_key_count(p, len(tensors))
    if nested:
        notes.append(f"weights nested under '{nested}'")
    return RawCheckpoint(str(p), "torch (weights_only)", tensors, notes=notes, nested_under=nested)


def _find_state_dict(obj: Any, where: str, _path: str = "") -> "tuple[dict[str, Tensor], str]":
    """The mapping of names to tensors inside a loaded checkpoint, and the nesting path to it."""
    from torch import Tensor

    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors, _path
        for key in NESTING:
            if isinstance(obj.get(key), dict):
                found, nested = _find_state_dict(obj[key], where, f"{_path}.{key}" if _path else key)
                if found:
                    return found, nested
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise VitcliError(where, f"no state dict of tensors found (top level holds: {keys})")


def strip_wrappers(tensors: "dict[str, Tensor]") -> "tuple[dict[str, Tensor], list[str]]":
    """Drop `module.` (DataParallel) and `_orig_mod.` (torch.compile) when every key has them."""
    notes = []
    changed = True
    while changed and tensors:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                notes.append(f"prefix '{prefix}' removed")
                changed = True
    return tensors, notes


# ---- TorchScript archives, read without torch.jit.load ---------------------------------------

_STORAGE_DTYPES = {  # storage class → torch dtype name
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}


class _ScriptObject:
    """A `__torch__.*` object from a TorchScript pickle: only its attributes, no behaviour."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:  # called by BUILD
        self.state = state


def _script_class(type_name: str):
    class Bag(_ScriptObject):
        def __new__(cls, *args: Any) -> "Bag":
            obj = object.__new__(cls)
            obj.type_name, obj.state = type_name, None
            return obj

        def __init__(self, *args: Any) -> None:  # NEWOBJ does not call __init__; keep it inert
            pass

    return Bag


def _rebuild_tensor(storage: "Tensor", offset: int, size: tuple, stride: tuple, *_: Any) -> "Tensor":
    """torch._utils._rebuild_tensor_v2 on our flat storage tensor."""
    import torch

    if storage.numel() == 0:
        return storage.new_empty(size)
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


class _TorchScriptUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, z: zipfile.ZipFile, prefix: str, where: str) -> None:
        super().__init__(io.BytesIO(data))
        self.z, self.prefix, self.where = z, prefix, where

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _script_class(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            import torch

            return getattr(torch, _STORAGE_DTYPES[name])
        raise VitcliError(self.where, f"refused: the TorchScript archive's data.pkl asks for {module}.{name}, "
                          "which is not a tensor or module attribute; nothing was executed")

    def persistent_load(self, pid: Any) -> "Tensor":
        import torch

        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == "storage"):
            raise VitcliError(self.where, f"refused: unknown persistent id {pid!r:.60} in the TorchScript archive")
        dtype, key = pid[1], str(pid[2])
        if not isinstance(dtype, torch.dtype) or not re.fullmatch(r"\w+", key):
            raise VitcliError(self.where, f"refused: malformed storage record {pid!r:.60}")
        data = read_member(self.z, f"{self.prefix}/data/{key}", self.where)
        if not data:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(data, dtype=dtype)


def _torchscript_prefix(z: zipfile.ZipFile) -> str | None:
    """The archive's top folder when it holds data.pkl, constants.pkl and code/ (TorchScript), else None.

    One pass over the names into sets: linear in the number of entries (100,000 entries take
    milliseconds, where a membership test in the list per candidate was quadratic)."""
    names = z.namelist()
    have = set(names)
    with_code = {n.split("/", 2)[0] for n in names if n.count("/") >= 2 and n.split("/", 2)[1] == "code"}
    for n in names:
        if n.endswith("/data.pkl") and n.count("/") == 1:
            prefix = n[: -len("/data.pkl")]
            if f"{prefix}/constants.pkl" in have and prefix in with_code:
                return prefix
    return None



def _read_torchscript(p: Path, z: zipfile.ZipFile) -> "dict[str, Tensor]":
    prefix = _torchscript_prefix(z)
    if prefix is None:
        raise VitcliError(str(p), "not a TorchScript archive (no data.pkl beside constants.pkl and code)")
    check_declared_sizes(p, z)
    order = bytes(read_member(z, f"{prefix}/byteorder", str(p), 64)).decode().strip() \
        if f"{prefix}/byteorder" in z.NameToInfo else "little"
    if order != "little":
        raise VitcliError(str(p), f"TorchScript archive saved with {order}-endian storages, which are not supported")
    try:
        pickled = bytes(read_member(z, f"{prefix}/data.pkl", str(p), MAX_PICKLE_BYTES))
        root = _TorchScriptUnpickler(pickled, z, prefix, str(p)).load()
    except VitcliError:
        raise
    except Exception as e:  # malformed pickle: say so, never fall back to torch.jit.load
        raise VitcliError(str(p), f"not a readable TorchScript archive ({_short(e)})") from None
    tensors: dict[str, Tensor] = {}
    _walk(root, "", tensors)
    check_key_count(p, len(tensors))
    if not tensors:
        raise VitcliError(str(p), "TorchScript archive holds no tensors")
    return tensors


def _walk(obj: Any, prefix: str, out: "dict[str, Tensor]") -> None:
    """Tensors of a TorchScript module tree as `a.b.c` names (its state_dict)."""
    from torch import Tensor

    state = obj.state if isinstance(obj, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _walk(value, f"{prefix}{name}.", out)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


__all__ = ["RawCheckpoint", "read_checkpoint", "read_configs", "strip_wrappers"]
