"""Read a lyrics corpus, normalise it and split off a contiguous held-out tail.

A corpus is a ``.txt`` file or a ``.zip`` holding ``.txt`` files. Each file is decoded on its own
(UTF-8 first, then GBK), because real collections mix encodings file by file.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

ENCODINGS = ("utf-8-sig", "gbk")


class CorpusError(ValueError):
    """The corpus cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Corpus:
    """Normalised corpus text split by lines into a training part and a held-out tail.

    The tail is split again, contiguously, into ``dev`` (its first half: early stopping, mixture weights,
    every choice that is tuned) and ``test`` (its second half: only reported), so the figures we report
    were never tuned on.
    """

    train: str
    heldout: str
    sha256: str

    @property
    def text(self) -> str:
        return self.train + self.heldout

    @property
    def dev(self) -> str:
        return split_lines(self.heldout, 0.5)[0] if self.heldout else ""

    @property
    def test(self) -> str:
        return split_lines(self.heldout, 0.5)[1] if self.heldout else ""


def decode(raw: bytes, name: str) -> str:
    """Decode one file's bytes as UTF-8, else GBK; raise CorpusError naming the file otherwise."""
    for encoding in ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CorpusError(f"{name}: not UTF-8 or GBK text; re-save it as UTF-8")


def read_texts(path: str | Path) -> list[tuple[str, str]]:
    """Return (name, decoded text) for a .txt file or for every .txt inside a .zip, in name order."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a folder; pass a .txt file or a .zip of .txt files")
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = sorted(
                    n for n in archive.namelist() if n.lower().endswith(".txt") and not n.startswith("__MACOSX/")
                )
                if not names:
                    raise CorpusError(f"{path}: the zip holds no .txt file")
                return [(f"{path}:{n}", decode(archive.read(n), f"{path}:{n}")) for n in names]
        except zipfile.BadZipFile as exc:
            raise CorpusError(f"{path}: not a readable zip file ({exc})") from exc
    return [(str(path), decode(path.read_bytes(), str(path)))]


_SPACES = re.compile(r"[ \t\u3000\u00a0]+")


def normalise(text: str) -> str:
    """Unify line breaks and spaces, drop control characters and blank lines.

    Full-width and repeated spaces become one ASCII space (jieba would otherwise make each a token);
    a line keeps its inner spaces because lyrics use them as pauses.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch == "\n" or not unicodedata.category(ch).startswith("C"))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "".join(line + "\n" for line in lines if line)


def split_lines(text: str, heldout_fraction: float) -> tuple[str, str]:
    """Split normalised text into (train, heldout): the held-out part is the last lines, contiguous.

    A random line split would leak: most lines of a lyrics corpus are repeated choruses.
    """
    lines = text.splitlines(keepends=True)
    n_heldout = int(round(len(lines) * heldout_fraction))
    if heldout_fraction > 0 and (n_heldout == 0 or n_heldout >= len(lines)):
        raise CorpusError(
            f"the corpus has {len(lines)} lines: too few to hold out {heldout_fraction:.0%} for validation"
        )
    cut = len(lines) - n_heldout
    return "".join(lines[:cut]), "".join(lines[cut:])


def load_corpus(path: str | Path, heldout_fraction: float = 0.1) -> Corpus:
    """Read, normalise and split a corpus; raise CorpusError with an actionable message."""
    texts = read_texts(path)
    text = "".join(normalise(t) for _, t in texts)
    if not text.strip():
        raise CorpusError(f"{path}: the corpus is empty")
    train, heldout = split_lines(text, heldout_fraction)
    return Corpus(train=train, heldout=heldout, sha256=hashlib.sha256(text.encode()).hexdigest())
