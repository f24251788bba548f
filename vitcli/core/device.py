"""Choosing the device and dtype, with a clear error where a device is absent."""

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """'auto' → cuda if present, else mps, else cpu; 'cuda', 'cuda:N', 'mps', 'cpu' checked to exist."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"'{name}' is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"'{name}' asked for, but no CUDA GPU is available here (use --device cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"'{name}' asked for, but only {count} CUDA device(s) exist")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"'{name}' asked for, but Apple MPS is not available here (use --device cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"'{name}' is not a supported device: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str | None]:
    """The torch dtype for `name`, and a warning when a half type will be slow on the CPU."""
    if name not in DTYPES:
        raise ValueError(f"'{name}' is not a dtype: use one of {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    warning = None
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        slower = "about 400×" if dtype == torch.float16 else "about 4×"
        warning = f"{name} on the CPU is {slower} slower than float32 and less exact; float32 is the CPU default"
    return dtype, warning
