"""`hf-hub:ORG/NAME` and `timm:NAME` weights specs, resolved through the Hugging Face cache.

The local cache is tried first (no network); the hub is asked only when HF_HUB_OFFLINE is not
set. `huggingface_hub` is optional: without it, or when a file is in neither place, one error
says which file is missing and how to pass a local file instead. The cache folder and the offline
switch are read from the environment at call time (HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE).
"""

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vitcli.checkpoints.read import CONFIG_FILES, WEIGHT_FILES
from vitcli.errors import VitcliError

HUB_PREFIXES = ("hf-hub:", "timm:")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # an organisation or repository name on the hub
REVISION = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")  # a branch (may hold '/'), tag or commit
MAX_REF_BYTES = 1024  # refs/<branch> holds one commit hash (40 hex digits)


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
    if repo.count("/") != 1 or not all(NAME.fullmatch(part) and part not in (".", "..") for part in repo.split("/")):
        raise VitcliError(spec, "expected hf-hub:ORG/NAME or timm:NAME "
                                "(e.g. timm:vit_base_patch16_224.augreg2_in21k_ft_in1k)")
    if revision and (not REVISION.fullmatch(revision) or {".", ".."} & set(revision.split("/"))):
        raise VitcliError(spec, f"revision {revision!r:.60} is not a branch, tag or commit name (letters, digits, "
                          "'.', '_', '-' and '/' between names; no '..')")
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


def resolve(spec: str, online: bool = False) -> Resolved:
    """The weights file of a hub spec: from the local cache first, read by hand (no network, no waiting);
    from the hub only when `online` is asked, or HF_HUB_OFFLINE is unset and the cache has nothing."""
    repo, revision = parse_spec(spec)
    if spec.startswith("timm:"):
        repo = _cached_timm_repo(repo, spec)
    snapshot = cached_snapshot(repo, revision, spec)
    if snapshot is not None:
        for name in WEIGHT_FILES:
            if (snapshot / name).is_file():
                configs = {n: snapshot / n for n in CONFIG_FILES if (snapshot / n).is_file()}
                return Resolved(spec, snapshot / name, repo, configs)
    repo_cached = (cache_dir() / ("models--" + repo.replace("/", "--"))).is_dir()
    if online or (not offline() and not repo_cached):
        return _download(spec, repo, revision)
    raise _missing(spec, repo, "the hub was not asked (HF_HUB_OFFLINE is set; --online asks it)" if offline()
                   else "the hub was not asked (pass --online to download it)")


def cached_snapshot(repo: str, revision: str | None, spec: str) -> Path | None:
    """`models--ORG--NAME/snapshots/<commit>` for `revision` (a branch or tag in refs/, or a full or
    short commit hash), `refs/main`, or the one snapshot when there is no refs/ folder."""
    base = cache_dir() / ("models--" + repo.replace("/", "--"))
    snapshots = base / "snapshots"
    if not snapshots.is_dir():
        return None
    names = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
    wanted = revision or "main"
    ref = base / "refs" / wanted
    if ref.exists() or ref.is_symlink():  # a FIFO, a device or a dangling link is refused unread, not skipped
        from vitcli.checkpoints.bounds import read_text_capped

        try:
            commit = read_text_capped(ref, MAX_REF_BYTES, "a ref (one commit hash)").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return snapshots / commit if commit in names else None
    if revision:
        matches = [n for n in names if n.startswith(revision.lower())]
        if len(matches) > 1:
            raise VitcliError(spec,
                              f"revision {revision} matches {len(matches)} cached snapshots; give more of the hash")
        return snapshots / matches[0] if matches else None
    return snapshots / names[0] if len(names) == 1 else None


def _download(spec: str, repo: str, revision: str | None) -> Resolved:
    """Ask the hub once, with short timeouts and no retry storm; config files beside the weights."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise _missing(spec, repo,
                       "downloading needs the huggingface_hub package (pip install huggingface_hub)") from None
    unreachable = _unreachable()
    if unreachable:
        raise _missing(spec, repo, f"the hub is unreachable ({unreachable})")
    problem = "not found"
    for name in WEIGHT_FILES:
        try:
            weights = Path(hf_hub_download(repo, name, revision=revision, cache_dir=str(cache_dir())))
        except Exception as e:  # EntryNotFound, RepositoryNotFound, no network…
            problem = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
            if "NotFound" not in type(e).__name__ or type(e).__name__.startswith("Local"):
                break  # the hub is unreachable: do not ask again for every file name
            continue
        configs = {}
        for config in CONFIG_FILES:
            with contextlib.suppress(Exception):
                configs[config] = Path(hf_hub_download(repo, config, revision=revision, cache_dir=str(cache_dir())))
        return Resolved(spec, weights, repo, configs)
    raise _missing(spec, repo, f"the hub could not provide it ({problem})")


def _unreachable(timeout: float = 3.0) -> str:
    """Why the hub's host cannot be reached within `timeout` seconds ('' when it can): one quick probe
    instead of huggingface_hub's retries with back-off (about 100 s without a network)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return ""


def _missing(spec: str, repo: str, why: str) -> VitcliError:
    """The one-line error: what is missing, where it was looked for, and the command that gets it."""
    return VitcliError(spec, f"none of {', '.join(WEIGHT_FILES)} of {repo} is in the local Hugging Face cache "
                       f"({cache_dir()}), and {why}; download it with `{download_command(repo)}` or pass a "
                       f"local file: --weights path/to/{WEIGHT_FILES[0]}")


def download_command(repo: str) -> str:
    """The installed huggingface_hub's own download command (`hf` since 0.34, `huggingface-cli` before)."""
    try:
        from importlib.metadata import version

        major, minor = (int(v) for v in version("huggingface_hub").split(".")[:2])
        tool = "hf" if (major, minor) >= (0, 34) else "huggingface-cli"
    except Exception:
        tool = "hf"
    return f"{tool} download {repo} {WEIGHT_FILES[0]}"


__all__ = ["Resolved", "cache_dir", "cached_snapshot", "download_command", "is_hub_spec", "offline", "parse_spec",
           "resolve"]
