"""Read a lyrics corpus, normalise it and split off a contiguous held-out tail.

A corpus is a ``.txt`` file or a ``.zip`` holding ``.txt`` files. Each file is decoded on its own
(UTF-8 first, then GBK), because real collections mix encodings file by file. A file with a few stray
bytes that neither encoding reads (a GBK file cut and pasted together) loses only the lines they are
on; a file that is mostly unreadable, or binary, is refused with its name.

Texts added later (``/corpus add`` in the bot, ``--added-corpora`` on the command line) join the
*training* part only: the held-out tail is always the base corpus' own, so models trained with and
without them are scored on the same text, and ``Corpus.sha256`` (of the base corpus) names that text.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

ENCODINGS = ("utf-8-sig", "gbk")
# A file whose unreadable lines are at most this share of its lines loses those lines; above it, it is refused.
MAX_BAD_LINE_SHARE = 0.1
# Text files hold almost no control bytes besides tab and line breaks; binary files are full of them.
MAX_CONTROL_SHARE = 0.01
_TEXT_CONTROLS = frozenset(b"\t\n\r\f")

# The default corpus: the reference lyrics once `python -m model fetch` has downloaded them, else the sample.
FETCHED_CORPUS = Path("data/jaychou_lyrics.txt.zip")
SAMPLE_CORPUS = Path("data/sample_lyrics.txt")
SAMPLE_NOTE = (
    "using data/sample_lyrics.txt, a few hundred lines we wrote ourselves, not Jay Chou's lyrics: "
    "run `python -m model fetch` to download the real corpus to data/jaychou_lyrics.txt.zip"
)


class CorpusError(ValueError):
    """The corpus cannot be used; the message says which file and why."""


def default_corpus() -> Path:
    """data/jaychou_lyrics.txt.zip if `python -m model fetch` has put it there, else the bundled sample."""
    return FETCHED_CORPUS if FETCHED_CORPUS.is_file() else SAMPLE_CORPUS


_CHECKOUT_SAMPLE = Path(__file__).resolve().parents[1] / SAMPLE_CORPUS  # the same file, by an absolute path


def is_sample(path: str | Path) -> bool:
    """Whether `path` is the bundled sample corpus (to say so wherever it is used)."""
    try:
        return Path(path).resolve() in (SAMPLE_CORPUS.resolve(), _CHECKOUT_SAMPLE)
    except OSError:
        return False


@dataclass(frozen=True)
class AddedText:
    """A text that joined the training part: its name, the hash of its normalised text, lines kept."""

    name: str
    sha256: str
    lines: int

    def to_dict(self) -> dict[str, str | int]:
        return {"name": self.name, "sha256": self.sha256, "lines": self.lines}


@dataclass(frozen=True)
class Corpus:
    """Normalised corpus text split by lines into a training part and a held-out tail.

    The tail is split again, contiguously, into ``dev`` (its first half: early stopping, mixture weights,
    every choice that is tuned) and ``test`` (its second half: only reported), so the figures we report
    were never tuned on. ``train`` holds the added texts (``added``) before the base corpus' own training
    lines, so the text just before the tail, which warms the model up for scoring, is the base corpus'.
    """

    train: str
    heldout: str
    sha256: str  # of the base corpus' normalised text: it names the held-out text
    added: tuple[AddedText, ...] = ()

    @property
    def text(self) -> str:
        return self.train + self.heldout

    @property
    def dev(self) -> str:
        return split_lines(self.heldout, 0.5)[0] if self.heldout else ""

    @property
    def test(self) -> str:
        return split_lines(self.heldout, 0.5)[1] if self.heldout else ""


# ---------------------------------------------------------------------------------------------
# decoding one file


@dataclass(frozen=True)
class Text:
    """One decoded file."""

    name: str
    text: str
    encoding: str
    dropped_lines: int = 0  # lines holding bytes that neither encoding reads, left out


def looks_binary(raw: bytes) -> bool:
    """NUL bytes (also UTF-16, which we do not read) or more control bytes than any text file has."""
    if b"\x00" in raw:
        return True
    sample = raw[: 1 << 16]
    controls = sum(1 for byte in sample if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    return controls > MAX_CONTROL_SHARE * max(len(sample), 1)


def decode_text(raw: bytes, name: str) -> Text:
    """Decode one file's bytes as UTF-8, else GBK; raise CorpusError naming the file when it cannot be read.

    When neither reads the whole file, the encoding that reads the most of it is used and the lines
    holding unreadable bytes are dropped, if they are few (MAX_BAD_LINE_SHARE): a GBK byte out of step
    garbles the rest of its line, and only its line, since a line break is never part of a pair.
    """
    if looks_binary(raw):
        raise CorpusError(f"{name}: a binary file, not text (or UTF-16 text); save the lyrics as UTF-8 text")
    for encoding in ENCODINGS:
        try:
            return Text(name, raw.decode(encoding), encoding)
        except UnicodeDecodeError:
            continue
    readings = [(raw.decode(encoding, errors="replace"), encoding) for encoding in ENCODINGS]
    text, encoding = min(readings, key=lambda reading: reading[0].count("\ufffd"))
    lines = text.splitlines(keepends=True)
    good = [line for line in lines if "\ufffd" not in line]
    bad = len(lines) - len(good)
    if not any(line.strip() for line in good) or bad > MAX_BAD_LINE_SHARE * len(lines):
        first = next(i for i, line in enumerate(lines, 1) if "\ufffd" in line)
        raise CorpusError(
            f"{name}: not UTF-8 or GBK text ({bad} of {len(lines)} lines unreadable, the first is line {first}); "
            "re-save it as UTF-8"
        )
    return Text(name, "".join(good), encoding, dropped_lines=bad)


def decode(raw: bytes, name: str) -> str:
    """The text of `decode_text`, logging any lines it had to drop."""
    decoded = decode_text(raw, name)
    if decoded.dropped_lines:
        log.warning("%s: dropped %d lines with bytes that are not %s", name, decoded.dropped_lines, decoded.encoding)
    return decoded.text


# ---------------------------------------------------------------------------------------------
# zips


@dataclass(frozen=True)
class ZipLimits:
    """What a zip may hold before it is refused: files and bytes once uncompressed (zip bombs)."""

    members: int = 100_000
    total_bytes: int = 2 << 30


@dataclass
class Archive:
    """The .txt files read from a zip, and what was left out and why."""

    texts: list[Text] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name (why)"


def read_zip(source: str | Path | bytes, name: str, limits: ZipLimits = ZipLimits()) -> Archive:
    """Every .txt in a zip, in name order, decoded; other members are skipped and named, never unpacked.

    The member count and the uncompressed bytes are limited (zip bombs): the sizes the zip declares are
    checked before anything is unpacked. zipfile reads a member no further than its declared size (a
    header that lies fails its checksum), and each read is capped by what the limit leaves besides. A
    zip inside the zip is not opened.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            if len(infos) > limits.members:
                raise CorpusError(f"{name}: the zip holds {len(infos):,} files; at most {limits.members:,} are read")
            declared = sum(i.file_size for i in infos)
            if declared > limits.total_bytes:
                raise CorpusError(
                    f"{name}: the zip unpacks to {declared:,} bytes; at most {limits.total_bytes:,} are read"
                )
            result = Archive()
            budget = limits.total_bytes
            for info in sorted(infos, key=lambda i: i.filename):
                member = f"{name}:{info.filename}"
                why = _skip_reason(info)
                if why:
                    if not info.filename.startswith("__MACOSX/"):  # macOS' resource forks: noise, not news
                        result.skipped.append(f"{info.filename} ({why})")
                    continue
                raw = _read_member(archive, info, member, budget)
                budget -= len(raw)
                if raw.startswith(b"PK\x03\x04"):
                    result.skipped.append(f"{info.filename} (a zip inside the zip, not unpacked)")
                    continue
                result.texts.append(decode_text(raw, member))
    except zipfile.BadZipFile as exc:
        raise CorpusError(f"{name}: not a readable zip file ({exc})") from exc
    except (OSError, EOFError, zlib.error) as exc:  # a truncated member, or a corrupt stream zipfile does not wrap
        raise CorpusError(f"{name}: not a readable zip file ({exc})") from exc
    return result


def _skip_reason(info: zipfile.ZipInfo) -> str | None:
    suffix = PurePosixPath(info.filename).suffix.lower()
    if suffix == ".zip":
        return "a zip inside the zip, not unpacked"
    if suffix != ".txt":
        return "not a .txt file"
    if PurePosixPath(info.filename).name.startswith("."):
        return "a hidden file"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, budget: int) -> bytes:
    try:
        with archive.open(info) as handle:
            raw = handle.read(budget + 1)
    except NotImplementedError as exc:  # a compression method zipfile lacks (deflate64, ...)
        raise CorpusError(f"{member}: compressed in a way this program cannot read ({exc}); re-zip it") from exc
    except RuntimeError as exc:  # e.g. "File is encrypted" for a member whose flag we did not see
        raise CorpusError(f"{member}: cannot be read ({exc})") from exc
    if len(raw) > budget:
        raise CorpusError(f"{member}: the zip unpacks to more bytes than it declares; refused")
    return raw


# ---------------------------------------------------------------------------------------------
# reading a corpus


def read_texts(path: str | Path) -> list[tuple[str, str]]:
    """Return (name, decoded text) for a .txt file or for every .txt inside a .zip, in name order."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a folder; pass a .txt file or a .zip of .txt files")
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        archive = read_zip(path, str(path))
        if not archive.texts:
            raise CorpusError(f"{path}: the zip holds no .txt file")
        texts = []
        for text in archive.texts:
            if text.dropped_lines:
                log.warning("%s: dropped %d lines that are not %s", text.name, text.dropped_lines, text.encoding)
            texts.append((text.name, text.text))
        return texts
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
    n_heldout = round(len(lines) * heldout_fraction)
    if heldout_fraction > 0 and (n_heldout == 0 or n_heldout >= len(lines)):
        raise CorpusError(
            f"the corpus has {len(lines)} lines: too few to hold out {heldout_fraction:.0%} for validation"
        )
    cut = len(lines) - n_heldout
    return "".join(lines[:cut]), "".join(lines[cut:])


def new_lines(text: str, seen: set[str]) -> tuple[list[str], int]:
    """The lines of normalised `text` not in `seen`, each once, in order (`seen` grows); and how many were dropped."""
    kept, dropped = [], 0
    for line in text.splitlines():
        if line in seen:
            dropped += 1
        else:
            seen.add(line)
            kept.append(line)
    return kept, dropped


def added_files(folder: str | Path) -> list[Path]:
    """The .txt files of a folder of added texts, in name order (hidden and temporary files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no such folder of added texts")
    return sorted(p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith("."))


def load_corpus(
    path: str | Path, heldout_fraction: float = 0.1, added: str | Path | Sequence[str | Path] | None = None
) -> Corpus:
    """Read, normalise and split a corpus; raise CorpusError with an actionable message.

    `added` (a folder of .txt files, or a list of files) joins the training part only. Its lines that
    the base corpus already has, anywhere, are dropped, and so are repeats across added files: a line
    of the held-out tail must never be trained on, or a model would be scored on text it has seen.
    """
    texts = read_texts(path)
    text = "".join(normalise(t) for _, t in texts)
    if not text.strip():
        raise CorpusError(f"{path}: the corpus is empty")
    train, heldout = split_lines(text, heldout_fraction)
    extra, records = _added_lines(_added_paths(added), set(text.splitlines()))
    return Corpus(
        train="".join(line + "\n" for line in extra) + train,
        heldout=heldout,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        added=tuple(records),
    )


def _added_paths(added: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if added is None or added == "":
        return []
    if isinstance(added, (str, Path)):
        return added_files(added)
    return [Path(p) for p in added]


def _added_lines(paths: Iterable[Path], seen: set[str]) -> tuple[list[str], list[AddedText]]:
    lines: list[str] = []
    records = []
    for path in paths:
        text = "".join(normalise(t) for _, t in read_texts(path))
        kept, _ = new_lines(text, seen)
        lines += kept
        records.append(AddedText(path.name, hashlib.sha256(text.encode()).hexdigest(), len(kept)))
    return lines, records
