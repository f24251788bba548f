"""`hf-hub:ORG/NAME` and `timm:NAME` weights specs, resolved through the Hugging Face cache.

The local cache is tried first (no network); the hub is asked only when HF_HUB_OFFLINE is not
set. `huggingface_hub` is optional: without it, or when a file is in neither place, one error
says which file is missing and how to pass a local file instead. The cache folder and the offline
switch are read from the environment at call time (HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from vitcli.checkpoints.read import CONFIG_FILES, WEIGHT_FILES
from vitcli.errors import VitcliError

HUB_PREFIXES = ("hf-hub:", "timm:")


@dataclass
class Resolved:
    """A weights file on disk and the config files found next to it in the same snapshot."""

    spec: str
    path: Path
    repo: str
    config_paths: dict[str, Path] = field(default_factory=dict)


def is_hub_spec(spec: str) -> bool:
    return spec.startswith(HUB_PREFIXES)


def cache_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (read now, not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'hf-hub:org/name@rev' → ('org/name', 'rev'); 'timm:name' → ('timm/name', None)."""
    if spec.startswith("timm:"):
        body, repo_prefix = spec[len("timm:"):], "timm/"
    else:
        body, repo_prefix = spec[len("hf-hub:"):], ""
    body, _, revision = body.partition("@")
    repo = repo_prefix + body.strip().strip("/")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise VitcliError(spec, "expected hf-hub:ORG/NAME or timm:NAME (e.g. timm:vit_base_patch16_224.augreg2_in21k_ft_in1k)")
    return repo, revision or None


def _cached_timm_repo(repo: str, spec: str) -> str:
    """`timm/NAME` without a pretrained tag: the one cached `timm/NAME.TAG`, if exactly one."""
    if "." in repo.split("/", 1)[1]:
        return repo
    base = cache_dir()
    exact = base / ("models--" + repo.replace("/", "--"))
    if exact.is_dir():
        return repo
    tagged = sorted(base.glob("models--" + repo.replace("/", "--") + ".*")) if base.is_dir() else []
    if len(tagged) == 1:
        return tagged[0].name[len("models--"):].replace("--", "/")
    if len(tagged) > 1:
        names = ", ".join(t.name[len("models--"):].replace("--", "/") for t in tagged)
        raise VitcliError(spec, f"several pretrained tags are cached ({names}): name one, e.g. timm:NAME.TAG")
    return repo


def resolve(spec: str) -> Resolved:
    """The weights file of a hub spec, from the local cache (or the hub when online)."""
    repo, revision = parse_spec(spec)
    if spec.startswith("timm:"):
        repo = _cached_timm_repo(repo, spec)
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise VitcliError(spec, f"resolving hub names needs the huggingface_hub package (pip install huggingface_hub); "
                          f"or download {WEIGHT_FILES[0]} of {repo} yourself and pass it: --weights PATH/{WEIGHT_FILES[0]}") from None
    weights, problem, online = _fetch_first(repo, revision, WEIGHT_FILES, allow_online=not offline())
    if weights is None:
        where = f"the local Hugging Face cache ({cache_dir()})"
        how = ("the hub was not asked because HF_HUB_OFFLINE is set" if offline()
               else f"the hub could not provide it ({problem})")
        raise VitcliError(spec, f"none of {', '.join(WEIGHT_FILES)} of {repo} is in {where}, and {how}; "
                          f"download it (huggingface-cli download {repo} {WEIGHT_FILES[0]}) or pass a local "
                          f"file: --weights path/to/{WEIGHT_FILES[0]}")
    configs = {}
    for name in CONFIG_FILES:  # from the hub only when the weights themselves came from there
        found, _, _ = _fetch_first(repo, revision, (name,), allow_online=online)
        if found is not None:
            configs[name] = found
    return Resolved(spec, weights, repo, configs)


def _fetch_first(repo: str, revision: str | None, names: tuple[str, ...],
                 allow_online: bool) -> tuple[Path | None, str, bool]:
    """(path, "", from_hub) for the first of `names` in the cache, else on the hub; (None, why, False) if none."""
    from huggingface_hub import hf_hub_download

    problem = "not found"
    for local_only in (True, False) if allow_online else (True,):
        for name in names:
            try:
                path = hf_hub_download(repo, name, revision=revision, cache_dir=str(cache_dir()),
                                       local_files_only=local_only)
                return Path(path), "", not local_only
            except Exception as e:  # (Local)EntryNotFound, RepositoryNotFound, offline, network errors…
                problem = type(e).__name__
                if not local_only and "NotFound" not in problem:  # the hub is unreachable: stop asking
                    first = str(e).splitlines()[0][:160] if str(e) else ""
                    return None, f"{problem}: {first}" if first else problem, False
    return None, problem, False


__all__ = ["Resolved", "cache_dir", "is_hub_spec", "offline", "parse_spec", "resolve"]
