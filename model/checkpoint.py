"""Resumable checkpoints and serving bundles: plain tensors and values, written atomically.

Both files hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(..., weights_only=True)``: a file carrying a pickled object is refused, never run.
A bundle is self-describing: network config, vocabulary, weights, the mixture with its count
models' training stream, metrics, training history and the corpus hash.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import random
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .errors import first_line
from .files import atomic_write
from .mixture import Mixture
from .network import LyricsNet, NetConfig

BUNDLE_FORMAT = "lyrics-bundle"
CHECKPOINT_FORMAT = "lyrics-checkpoint"
VERSION = 1


class BundleError(ValueError):
    """A bundle or checkpoint is missing, corrupt, foreign or of an unknown version."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save ``obj`` to ``path`` atomically (see atomic_write)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def safe_load(path: str | Path, expected_format: str) -> dict[str, Any]:
    """Load a file written by ``atomic_save`` with weights_only=True and check its format and version."""
    return _parse(path, _read(path), expected_format)


def _read(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: a folder, not a model file") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({first_line(exc)})") from exc


def _parse(path: str | Path, data: bytes, expected_format: str) -> dict[str, Any]:
    """`safe_load` on bytes already read: `load_bundle` hashes exactly the bytes it loaded."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BundleError(f"{path}: refused, it holds objects that are not plain data ({first_line(exc)})") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise BundleError(f"{path}: not a readable model file, truncated or corrupt ({first_line(exc)})") from exc
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        raise BundleError(f"{path}: not a {expected_format} file")
    if obj.get("version") != VERSION:
        raise BundleError(
            f"{path}: format version {obj.get('version')!r} is not supported (this program reads {VERSION})"
        )
    return obj


# ---------------------------------------------------------------- checkpoints (resume training)


@dataclass
class LoopState:
    """What a resumable checkpoint must restore for the next epoch to be identical."""

    epoch: int = 0
    best_bpc: float = math.inf
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


def _rng_state() -> dict[str, Any]:
    # Training draws only from torch's generators (dropout, <unk> masking) and Python's.
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [py_state[0], list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    net: LyricsNet,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loop: LoopState,
    vocab: list[str],
    train_config: dict,
    average: torch.nn.Module | None = None,
) -> None:
    """Save everything the next epoch needs to continue exactly as if never interrupted."""
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": VERSION,
            "net_config": vars(net.config).copy(),
            "vocab": vocab,
            "train_config": train_config,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": loop.epoch,
            "best_bpc": loop.best_bpc,
            "bad_epochs": loop.bad_epochs,
            "history": loop.history,
            "best_state": loop.best_state,
            "rng": _rng_state(),
            "average": average.state_dict() if average is not None else None,
        },
        path,
    )


def load_checkpoint(
    path: str | Path,
    net: LyricsNet,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    vocab: list[str],
    average: torch.nn.Module | None = None,
) -> LoopState:
    """Restore a checkpoint into the given objects; refuse one from another corpus or network shape."""
    ckpt = safe_load(path, CHECKPOINT_FORMAT)
    if ckpt["vocab"] != vocab:
        raise BundleError(f"{path}: was trained on another corpus or vocabulary; train afresh without --resume")
    try:
        trained = NetConfig(**ckpt["net_config"])  # a field added since is at its default: "off"
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: its network config is unreadable ({first_line(exc)}); train afresh") from exc
    if trained != net.config:
        raise BundleError(
            f"{path}: was trained with another network shape {ckpt['net_config']}; "
            "pass the same --cell/--layers/--hidden/--embed or train afresh"
        )
    net.load_state_dict(ckpt["model"])
    if average is not None:
        if ckpt.get("average") is None:
            raise BundleError(f"{path}: was trained without --average; resume with the same options or train afresh")
        average.load_state_dict(ckpt["average"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    return LoopState(
        epoch=ckpt["epoch"],
        best_bpc=ckpt["best_bpc"],
        bad_epochs=ckpt["bad_epochs"],
        history=ckpt["history"],
        best_state=ckpt["best_state"],
    )


# ---------------------------------------------------------------- bundles (serving)


@dataclass
class Bundle:
    """A loaded serving bundle."""

    net: LyricsNet
    vocab: list[str]
    train_ids: list[int]  # the stream the count models count: the training text (and the dev text, --count-dev)
    mixture: Mixture
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    train_config: dict[str, Any]
    corpus_sha256: str  # of the base corpus: which held-out text `metrics` are on
    created_at: str
    sha256: str
    added_corpora: list[dict[str, Any]] = field(default_factory=list)  # {name, sha256, lines} trained on too

    @property
    def heldout_fraction(self) -> float:
        """The share of the corpus' lines this bundle held out (TrainConfig's default for bundles that predate
        recording it)."""
        return float(self.train_config.get("heldout_fraction", TrainConfig.heldout_fraction))


def save_bundle(
    path: str | Path,
    net: LyricsNet,
    vocab: list[str],
    train_ids: list[int],
    mixture: Mixture,
    metrics: dict,
    history: list[dict],
    train_config: dict,
    corpus_sha256: str,
    added_corpora: list[dict[str, Any]] | None = None,
) -> None:
    """Write the serving bundle atomically (weights on CPU, so any device can load it)."""
    atomic_save(
        {
            "format": BUNDLE_FORMAT,
            "version": VERSION,
            "net_config": vars(net.config).copy(),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "vocab": vocab,
            "train_ids": torch.tensor(train_ids, dtype=torch.int32),
            "mixture": mixture.to_dict(),
            "metrics": metrics,
            "history": history,
            "train_config": train_config,
            "corpus_sha256": corpus_sha256,
            "added_corpora": list(added_corpora or []),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        path,
    )


def _check_shapes(path: str | Path, config: NetConfig, state: Any) -> None:
    """Refuse weights that do not fit the config, comparing shapes on the meta device (which allocates
    nothing): a config asking for a huge network must not be built first, in every process that loads it."""
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in LyricsNet(config).state_dict().items()}
    if not isinstance(state, dict):
        raise BundleError(f"{path}: the bundle holds no weights")
    for name in sorted(set(expected) | set(state)):
        tensor = state.get(name)
        have = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None
        if have != expected.get(name):
            raise BundleError(
                f"{path}: the weights do not match the network its config describes ({name}: "
                f"{'absent' if have is None else list(have)} in the file, "
                f"{'none' if name not in expected else list(expected[name])} for the config)"
            )


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load and validate a bundle; any inconsistency raises BundleError, nothing is half-loaded.

    The file is read once: its `sha256` is that of the bytes loaded, even if the file is replaced meanwhile
    (a process that watches the file for a new bundle compares hashes with it).
    """
    data = _read(path)
    obj = _parse(path, data, BUNDLE_FORMAT)
    try:
        config = NetConfig(**obj["net_config"])
        vocab = list(obj["vocab"])
        if len(vocab) != config.vocab_size or not all(isinstance(t, str) for t in vocab):
            raise BundleError(f"{path}: the vocabulary does not match the network")
        _check_shapes(path, config, obj["state_dict"])
        net = LyricsNet(config)
        net.load_state_dict(obj["state_dict"])
        train_ids = obj["train_ids"].tolist()
        if train_ids and not 0 <= min(train_ids) <= max(train_ids) < len(vocab):
            raise BundleError(f"{path}: the training stream refers to tokens outside the vocabulary")
        bundle = Bundle(
            net=net.to(device).eval(),
            vocab=vocab,
            train_ids=train_ids,
            mixture=Mixture.from_dict(obj["mixture"]),
            metrics=dict(obj["metrics"]),
            history=list(obj["history"]),
            train_config=dict(obj["train_config"]),
            corpus_sha256=str(obj["corpus_sha256"]),
            created_at=str(obj["created_at"]),
            sha256=hashlib.sha256(data).hexdigest(),
            # Bundles written before added texts existed have no "added_corpora".
            added_corpora=[dict(added) for added in obj.get("added_corpora", [])],
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise BundleError(f"{path}: the bundle is incomplete or inconsistent ({first_line(exc)})") from exc
    return bundle
