"""Lyrics owners add from chat (/corpus add): checked, stored, listed and removed. Knows nothing of Discord:
its refusals are sentences of the catalogues (bot/locales/, corpus_refused.*), which the cog puts in the
member's language.

    corpora = Corpora(settings.corpora_path, settings.corpus_path)
    refusal = check_attachment(filename, declared_size)     # before downloading anything: UploadRefused or None
    added = corpora.add(filename, data, Uploader(id, name))  # -> Added (a preview), or raises UploadRefused
    refusal.render(locale)                                   # an UploadRefused, returned or raised: why, in words
    corpora.entries()                                        # what is stored, in training order
    corpora.remove("七里香.txt")
    corpora.base()                                           # the base corpus: lines, characters, bytes

An upload is read exactly as the training corpus is (model.corpus: UTF-8, then GBK, per file; a zip's
.txt members; normalised), with the limits a stranger's file needs: 2 MB as sent, and for a zip its
member count and unpacked size. Lines the corpus already has (the base corpus, the files added before,
earlier lines of the same upload) are dropped, so what is stored is only what is new.

Each added file is `<name>.txt` in the folder (normalised UTF-8: what `python -m model train
--added-corpora FOLDER` reads) beside `<name>.json`, its record: who added it, when, from which file. The
record is written first and the text last, each atomically (temp file, fsync, os.replace), so training
never sees half a file; removing deletes the text first. A name comes from the upload's file name with
every path part and unsafe character taken out, and never replaces another.

Everything here blocks (files, jieba): call it from a thread, one writer at a time (the cog holds a lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from bot import i18n
from bot.characters import CharactersRefusal, characters_refusal, is_visible
from bot.i18n import Locale
from model.corpus import (
    CorpusError,
    Text,
    ZipLimits,
    added_files,
    decode_text,
    is_sample,
    new_lines,
    normalise,
    read_texts,
    read_zip,
)
from model.files import atomic_write, fsync_dir
from model.vocab import segment

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # as sent: a .txt, or a .zip of .txt
UPLOAD_ZIP_LIMITS = ZipLimits(members=200, total_bytes=4 * 1024 * 1024)  # unpacked: a zip bomb stops here
MAX_FILES = 200  # added files kept at once: the list, the autocomplete and each training run stay small
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # all the added files together (Settings.corpora_max_bytes)
NAME_CHARS = 40
KINDS = (".txt", ".zip")
SAMPLE_LINES = 3


class UploadRefused(ValueError):
    """The upload (or removal) cannot be done. Why is a sentence of the catalogues (`key`, one of
    corpus_refused.*, filled with `values`): the /corpus cog renders it in the member's language; str() is
    the English, for the log."""

    def __init__(self, key: str, **values: object) -> None:
        self.key = key
        self.values = values
        super().__init__(self.render(None))

    def render(self, locale: Locale) -> str:
        """Why, in `locale`'s language (a line's refused characters included)."""
        values = {
            name: value.render(locale, "line") if isinstance(value, CharactersRefusal) else value
            for name, value in self.values.items()
        }
        if values.get("problem") is None and "problem" in values:
            values["problem"] = i18n.text(locale, "corpus_refused.only_invisible")
        return i18n.text(locale, self.key, **values)


@dataclass(frozen=True)
class Uploader:
    """Who added a file: their Discord user id and the name they went by then."""

    id: int
    name: str


@dataclass(frozen=True)
class Entry:
    """One added file."""

    name: str  # the file in the folder, e.g. "七里香.txt"
    lines: int
    chars: int
    size: int  # bytes on disk
    added_by: Uploader | None = None  # None: no record (a file put there by hand)
    added_at: datetime | None = None
    source: str | None = None  # the file name it was uploaded as


@dataclass(frozen=True)
class BaseCorpus:
    """The base corpus: the file LYRICS_CORPUS names, whose tail is the held-out text."""

    path: Path
    lines: int
    chars: int
    size: int
    sample: bool  # the bundled sample rather than Jay Chou's lyrics


@dataclass(frozen=True)
class Added:
    """What /corpus add stored, for its preview."""

    entry: Entry
    new_words: list[str]  # words (jieba) the corpus did not have, in order of first use
    samples: list[str]  # a few lines from across the file
    duplicates: int  # lines dropped: the corpus (or the upload itself) already had them
    unreadable: int  # lines dropped: bytes neither UTF-8 nor GBK
    skipped: list[str]  # zip members left out, "name (why)"
    invisible: int = 0  # lines dropped: characters a /lyrics seed may not hold either (bot.characters)


def check_attachment(filename: str, size: int) -> UploadRefused | None:
    """Why an attachment cannot be a corpus, from what Discord says of it, before downloading; None if it may."""
    name = display_name(filename)
    if PurePosixPath(name).suffix.lower() not in KINDS:
        return UploadRefused("corpus_refused.not_text", name=name)
    if size > MAX_UPLOAD_BYTES:
        return UploadRefused(
            "corpus_refused.too_large", name=name, mb=f"{size / 1024 / 1024:.1f}", limit=_mb(MAX_UPLOAD_BYTES)
        )
    if size == 0:
        return UploadRefused("corpus_refused.empty", name=name)
    return None


def display_name(filename: str) -> str:
    """The last part of a file name, whichever separator it uses, for messages (`..` and the like removed)."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable() and ch != "`")
    return name.strip(". ")[:100] or "the file"


def safe_stem(filename: str) -> str:
    """A file name's stem with no path and nothing but letters, digits, `_` and `-`.

    'a/../七里香 (live).txt' -> '七里香_live'; a name with nothing left becomes 'lyrics'.
    """
    name = PurePosixPath(unicodedata.normalize("NFKC", filename).replace("\\", "/")).name
    stem = PurePosixPath(name).stem if name not in ("", ".", "..") else ""
    stem = re.sub(r"[^\w-]+", "_", stem).strip("_-")
    return stem[:NAME_CHARS].rstrip("_-") or "lyrics"


def words(text: str) -> set[str]:
    """The words of a text as the model segments them (jieba), punctuation and spaces left out."""
    return {w for w in segment(text) if any(ch.isalpha() for ch in w)}


class Corpora:
    """The folder of added files and the base corpus they are added to; see the module docstring."""

    def __init__(self, folder: Path, base: Path, *, max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
        self.folder = Path(folder)
        self.base_path = Path(base)
        self.max_total_bytes = max_total_bytes
        self._base_cache: tuple[tuple[int, int], str, BaseCorpus, set[str]] | None = None
        self._word_cache: dict[str, set[str]] = {}  # a text's sha256 -> its words (jieba is slow)

    # ---- reading

    def names(self) -> list[str]:
        """The added files' names, in name order, without reading them (for autocomplete)."""
        return [path.name for path in added_files(self.folder)] if self.folder.is_dir() else []

    def entries(self) -> list[Entry]:
        """The added files, in name order (the order training reads them in)."""
        if not self.folder.is_dir():
            return []
        return [self._entry(path) for path in added_files(self.folder)]

    def base(self) -> BaseCorpus:
        """The base corpus' size (read once per change of the file). Raises CorpusError if it cannot be read."""
        return self._base()[1]

    def _base(self) -> tuple[str, BaseCorpus, set[str]]:
        """The base corpus' text, size and lines, cached by the file's size and modification time."""
        stat = self.base_path.stat() if self.base_path.is_file() else None
        key = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        if self._base_cache is None or self._base_cache[0] != key:
            text = "".join(normalise(t) for _, t in read_texts(self.base_path))
            info = BaseCorpus(
                self.base_path, text.count("\n"), len(text), stat.st_size if stat else 0, is_sample(self.base_path)
            )
            self._base_cache = (key, text, info, set(text.splitlines()))
        _, text, info, lines = self._base_cache
        return text, info, lines

    def _entry(self, path: Path) -> Entry:
        record = _read_record(path.with_suffix(".json"))
        size = path.stat().st_size
        if (
            record.get("bytes") == size
            and isinstance(record.get("lines"), int)
            and isinstance(record.get("chars"), int)
        ):
            lines, chars = record["lines"], record["chars"]  # the record of this very file: no need to read it
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
            lines, chars = text.count("\n"), len(text)
        added_by = record.get("added_by") or {}
        try:
            uploader = Uploader(int(added_by["id"]), str(added_by["name"]))
        except (KeyError, TypeError, ValueError):
            uploader = None
        try:
            added_at = datetime.fromisoformat(str(record["added_at"]))
        except (KeyError, ValueError):
            added_at = None
        source = record.get("source")
        return Entry(
            name=path.name,
            lines=lines,
            chars=chars,
            size=size,
            added_by=uploader,
            added_at=added_at,
            source=str(source) if source else None,
        )

    # ---- adding

    def add(self, filename: str, data: bytes, uploader: Uploader, *, now: datetime | None = None) -> Added:
        """Check, deduplicate and store an upload; raise UploadRefused (nothing stored) saying why it cannot be."""
        shown = display_name(filename)
        if refusal := check_attachment(filename, len(data)):
            raise refusal
        entries = self.entries()
        if len(entries) >= MAX_FILES:
            raise UploadRefused("corpus_refused.too_many", count=MAX_FILES)
        texts, skipped = _read_upload(shown, data)
        unreadable = sum(t.dropped_lines for t in texts)
        text = "".join(normalise(t.text) for t in texts)
        if not text:
            raise UploadRefused("corpus_refused.no_text", name=shown)
        text, invisible, problem = _visible_lines(text)
        if not text:
            raise UploadRefused("corpus_refused.no_plain_text", name=shown, problem=problem)
        try:
            base_text, _, base_lines = self._base()
        except CorpusError as exc:
            raise UploadRefused("corpus_refused.base_unreadable", error=exc) from exc
        seen = set(base_lines)
        known_words = set(self._words_of(base_text))
        for entry in entries:
            try:  # read as training reads it: a file put there by hand may be GBK, or unreadable
                added_text = "".join(normalise(t) for _, t in read_texts(self.folder / entry.name))
            except CorpusError as exc:
                raise UploadRefused("corpus_refused.added_unreadable", error=exc) from exc
            seen.update(added_text.splitlines())
            known_words |= self._words_of(added_text)
        kept, duplicates = new_lines(text, seen)
        if not kept:
            raise UploadRefused("corpus_refused.nothing_new", name=shown, duplicates=duplicates)
        body = "".join(line + "\n" for line in kept)
        held = sum(entry.size for entry in entries)
        if held + len(body.encode()) > self.max_total_bytes:
            sizes = {"held": _size(held), "adding": _size(len(body.encode())), "limit": _size(self.max_total_bytes)}
            raise UploadRefused("corpus_refused.too_much", name=shown, **sizes)
        new_words = [w for w in dict.fromkeys(segment(body)) if w not in known_words and any(c.isalpha() for c in w)]
        name = self._free_name(safe_stem(filename), entries)
        when = now or datetime.now(UTC)
        record = {
            "name": name,
            "source": shown,
            "added_by": {"id": uploader.id, "name": uploader.name},
            "added_at": when.isoformat(timespec="seconds"),
            "lines": len(kept),
            "chars": len(body),
            "bytes": len(body.encode()),
            "sha256": hashlib.sha256(body.encode()).hexdigest(),
            "duplicates": duplicates,
            "unreadable": unreadable,
            "skipped": skipped,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        # The record first: a crash between the two leaves a record without a text, which nothing trains on.
        record_bytes = json.dumps(record, ensure_ascii=False, indent=1).encode()
        atomic_write(target.with_suffix(".json"), lambda handle: handle.write(record_bytes))
        atomic_write(target, lambda handle: handle.write(body.encode()))
        log.info("added %s (%d lines) from %r for %s (%d)", name, len(kept), shown, uploader.name, uploader.id)
        step = max(1, len(kept) // SAMPLE_LINES)
        return Added(
            entry=self._entry(target),
            new_words=new_words,
            samples=kept[::step][:SAMPLE_LINES],
            duplicates=duplicates,
            unreadable=unreadable,
            skipped=skipped,
            invisible=invisible,
        )

    def _words_of(self, text: str) -> set[str]:
        key = hashlib.sha256(text.encode()).hexdigest()
        if key not in self._word_cache:
            self._word_cache[key] = words(text)
        return self._word_cache[key]

    def _free_name(self, stem: str, entries: list[Entry]) -> str:
        """`<stem>.txt`, or `<stem>-2.txt`... : no clash with a file or a record there, whatever the case."""
        taken = {e.name.lower() for e in entries}
        if self.folder.is_dir():
            taken |= {p.with_suffix(".txt").name.lower() for p in self.folder.iterdir()}
        name, n = f"{stem}.txt", 2
        while name.lower() in taken:
            name, n = f"{stem}-{n}.txt", n + 1
        return name

    # ---- removing

    def remove(self, name: str) -> Entry:
        """Delete an added file and its record; UploadRefused if there is no such file."""
        wanted = name.strip()
        entries = {e.name: e for e in self.entries()}
        entry = entries.get(wanted) or entries.get(f"{wanted}.txt")
        if entry is None:
            raise UploadRefused("corpus_refused.no_such_file", name=display_name(wanted))
        path = self.folder / entry.name  # a name from the listing, never one built from the request
        path.unlink()  # the text first: from here on, training no longer reads it
        path.with_suffix(".json").unlink(missing_ok=True)
        fsync_dir(self.folder)
        log.info("removed %s (%d lines)", entry.name, entry.lines)
        return entry

    def forget_uploader(self, user_id: int) -> int:
        """forget-me: take the member's id and name off the records of the files they added (the lyrics stay:
        they are the corpus, not data about the member); returns how many records changed."""
        if not self.folder.is_dir():
            return 0
        changed = 0
        for path in sorted(self.folder.glob("*.json")):
            record = _read_record(path)
            added_by = record.get("added_by")
            if not isinstance(added_by, dict) or str(added_by.get("id")) != str(user_id):
                continue
            record["added_by"] = None  # listed as "no record of who added it"
            data = json.dumps(record, ensure_ascii=False, indent=1).encode()
            atomic_write(path, lambda handle, data=data: handle.write(data))
            changed += 1
        if changed:
            log.info("took a forgotten member off %d corpus record(s)", changed)
        return changed


def _read_upload(shown: str, data: bytes) -> tuple[list[Text], list[str]]:
    """The decoded texts of an upload and the zip members left out; UploadRefused with the reason."""
    try:
        if PurePosixPath(shown).suffix.lower() == ".zip":
            archive = read_zip(data, shown, UPLOAD_ZIP_LIMITS)
            if not archive.texts:
                if archive.skipped:
                    raise UploadRefused(
                        "corpus_refused.zip_no_txt_left_out", name=shown, skipped="; ".join(archive.skipped[:5])
                    )
                raise UploadRefused("corpus_refused.zip_no_txt", name=shown)
            return archive.texts, archive.skipped
        return [decode_text(data, shown)], []
    except CorpusError as exc:
        raise UploadRefused("corpus_refused.unreadable", error=exc) from exc


def _visible_lines(text: str) -> tuple[str, int, CharactersRefusal | None]:
    """`text` without the lines a /lyrics seed could not be (invisible letters, stacked marks: bot.characters),
    how many went, and why the first one did."""
    kept, dropped, first = [], 0, None
    for line in text.splitlines():
        problem = characters_refusal(line)
        if problem is None and any(is_visible(ch) for ch in line):
            kept.append(line)
            continue
        dropped += 1
        first = first or problem
    return "".join(line + "\n" for line in kept), dropped, first


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MB"


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"
