"""Pretrained-weight downloads during a model build, served offline.

Detector factories download ImageNet weights while they build (``model_zoo.load_url``,
``torch.hub.load_state_dict_from_url``, ``torch.hub.load``, ``urllib`` fetches of ``.pth``
files). While bn2gn builds a model those calls never reach the network: a file already in the
torch hub cache (``torch.hub.get_dir()``) is served from there; otherwise the call returns an
empty state dict, loading it changes nothing (the layer keeps its initialisation), and the URL is
noted once. Checks that need pretrained statistics then say they are not available offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import urllib.parse
from typing import Iterator, List, Optional, Tuple

#: URL endings that are model weights; other ``urllib`` fetches are left alone.
WEIGHT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")


class OfflineState(dict):
    """The empty state dict returned for weights that are not in the hub cache."""


class OfflineHubError(RuntimeError):
    """``torch.hub.load`` of a repository that is not in the hub cache: it needs the network."""


@dataclasses.dataclass
class OfflineWeights:
    """What the build asked to download: served from the cache, or missing (kept its initialisation)."""

    served: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)

    def notes(self) -> List[str]:
        notes = [
            f"weights {url}: served from the torch hub cache ({path})" for url, path in self.served
        ]
        notes += [
            f"weights {url}: not in the torch hub cache and bn2gn does not download while it builds; "
            "the layers it would fill keep their initialisation"
            for url in self.missing
        ]
        return notes

    def as_dict(self) -> dict:
        return {"served": [list(s) for s in self.served], "missing": list(self.missing)}

    def _miss(self, url: str) -> None:
        if url not in self.missing:
            self.missing.append(url)


def is_weights_url(url: str) -> bool:
    path = urllib.parse.urlparse(url).path
    return url.startswith(("http://", "https://")) and path.endswith(WEIGHT_SUFFIXES)


def cached_weights(url: str, model_dir: Optional[str] = None, file_name: Optional[str] = None):
    """The hub-cache file torch would download ``url`` to, when it is there."""
    import torch.hub

    folder = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    name = file_name or os.path.basename(urllib.parse.urlparse(url).path)
    path = os.path.join(folder, name)
    return path if name and os.path.isfile(path) else None


@contextlib.contextmanager
def offline_weights() -> Iterator[OfflineWeights]:
    """While the block runs, weight downloads are served from the hub cache or come back empty."""
    import urllib.request

    import torch
    import torch.hub
    import torch.utils.model_zoo

    record = OfflineWeights()
    patches = [
        (torch.hub, "load_state_dict_from_url", _load_from_url(record)),
        (torch.utils.model_zoo, "load_url", _load_from_url(record)),
        (torch.hub, "download_url_to_file", _download_to_file(record)),
        (torch.hub, "load", _hub_load(torch.hub.load)),
        (urllib.request, "urlopen", _urlopen(record, urllib.request.urlopen)),
        (urllib.request, "urlretrieve", _urlretrieve(record, urllib.request.urlretrieve)),
        (
            torch.nn.Module,
            "load_state_dict",
            _load_state_dict(record, torch.nn.Module.load_state_dict),
        ),
    ]
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield record
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _load_from_url(record: OfflineWeights):
    def load_state_dict_from_url(
        url,
        model_dir=None,
        map_location=None,
        progress=True,
        check_hash=False,
        file_name=None,
        weights_only=False,
    ):
        import torch

        path = cached_weights(url, model_dir, file_name)
        if path is None:
            record._miss(url)
            return OfflineState()
        record.served.append((url, path))
        return torch.load(path, map_location=map_location or "cpu", weights_only=weights_only)

    return load_state_dict_from_url


def _empty_state_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({}, buffer)
    return buffer.getvalue()


def _download_to_file(record: OfflineWeights):
    def download_url_to_file(url, dst, hash_prefix=None, progress=True):
        path = cached_weights(url)
        if path is not None:
            record.served.append((url, path))
            shutil.copyfile(path, dst)
            return
        record._miss(url)
        with open(dst, "wb") as handle:
            handle.write(_empty_state_bytes())

    return download_url_to_file


def _hub_load(original):
    def load(repo_or_dir, model, *args, source="github", **kwargs):
        if source == "local":
            return original(repo_or_dir, model, *args, source="local", **kwargs)
        import torch.hub

        owner_name, _, ref = str(repo_or_dir).partition(":")
        folder_name = owner_name.replace("/", "_")
        for branch in [ref] if ref else ["main", "master"]:
            folder = os.path.join(torch.hub.get_dir(), f"{folder_name}_{branch}")
            if os.path.isdir(folder):
                kwargs.pop("trust_repo", None)
                kwargs.pop("force_reload", None)
                kwargs.pop("skip_validation", None)
                return original(folder, model, *args, source="local", **kwargs)
        raise OfflineHubError(
            f"torch.hub.load({repo_or_dir!r}) needs the network: the repository is not in the torch "
            f"hub cache {torch.hub.get_dir()}"
        )

    return load


def _urlopen(record: OfflineWeights, original):
    def urlopen(url, *args, **kwargs):
        text = url if isinstance(url, str) else getattr(url, "full_url", "")
        if not is_weights_url(text):
            return original(url, *args, **kwargs)
        path = cached_weights(text)
        if path is not None:
            record.served.append((text, path))
            with open(path, "rb") as handle:
                return io.BytesIO(handle.read())
        record._miss(text)
        return io.BytesIO(_empty_state_bytes())

    return urlopen


def _urlretrieve(record: OfflineWeights, original):
    def urlretrieve(url, filename=None, reporthook=None, data=None):
        if not is_weights_url(url):
            return original(url, filename, reporthook, data)
        path = cached_weights(url)
        if filename is None:
            import tempfile

            handle, filename = tempfile.mkstemp(suffix=os.path.basename(url))
            os.close(handle)
        if path is not None:
            record.served.append((url, path))
            shutil.copyfile(path, filename)
        else:
            record._miss(url)
            with open(filename, "wb") as handle:
                handle.write(_empty_state_bytes())
        return filename, None

    return urlretrieve


def _load_state_dict(record: OfflineWeights, original):
    def load_state_dict(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, OfflineState) or (record.missing and not state_dict):
            from torch.nn.modules.module import _IncompatibleKeys

            return _IncompatibleKeys(
                [], []
            )  # nothing to load: the layers keep their initialisation
        return original(self, state_dict, *args, **kwargs)

    return load_state_dict
