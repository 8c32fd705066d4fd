"""``python -m model fetch``: download the reference corpus, the Jay Chou lyrics the d2l-zh book publishes.

    fetch()                                   # -> data/jaychou_lyrics.txt.zip, verified by sha256
    fetch(url=..., sha256=..., out=...)       # another source, checksum or destination

The bytes go to a temporary file beside the destination, hashed as they arrive, and are renamed onto
it only once the hash matches: an interrupted, refused or wrong download leaves nothing behind, and a
reader never sees half a file. A destination that already holds the verified bytes is left alone, with
no request made. Every failure is one FetchError whose message says what happened (offline, a timeout,
an HTTP error, a wrong hash, a transfer cut short) and that nothing was written.

Two limits keep a hostile or broken server from holding it: `timeout` bounds each wait for the server, and
`deadline` the whole download, whatever the server does (one that drips a byte now and then, in its headers
or its body, never trips a per-read timeout: at the deadline its socket is shut). A redirect from https to
anything else is refused: the checksum guards the bytes, not the privacy of the request.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from tqdm import tqdm

from .corpus import FETCHED_CORPUS
from .files import file_sha256, fsync_dir

log = logging.getLogger(__name__)

DEFAULT_URL = "https://raw.githubusercontent.com/d2l-ai/d2l-zh/master/data/jaychou_lyrics.txt.zip"
DEFAULT_SHA256 = "3cfedd7d174111cdad5a27eaffaa6a2432a2842cf2590a03dd8a97610ea07043"
DEFAULT_OUT = FETCHED_CORPUS
TIMEOUT_S = 30.0  # per connection attempt and per read, not for the whole download
DEADLINE_S = 300.0  # the whole download: the corpus takes a second or two on any network
MAX_BYTES = 64 << 20  # the corpus is 52 KB; a server sending this much is sending something else
CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FetchError(RuntimeError):
    """The download failed or was refused; nothing was written. The message says why."""


@dataclass(frozen=True)
class Fetched:
    """Where the verified file is, and whether this call downloaded it."""

    path: Path
    downloaded: bool  # False: the verified file was already there
    size: int


def fetch(
    url: str = DEFAULT_URL,
    out: str | Path = DEFAULT_OUT,
    sha256: str = DEFAULT_SHA256,
    *,
    timeout: float = TIMEOUT_S,
    deadline: float = DEADLINE_S,
    progress: bool = True,
) -> Fetched:
    """Download `url` to `out` if `out` does not already hold the bytes whose sha256 is `sha256`, in at most
    `deadline` seconds overall (`timeout` for each wait on the server)."""
    out, expected = Path(out), sha256.strip().lower()
    if not _SHA256.fullmatch(expected):
        raise FetchError(f"--sha256 {sha256!r} is not a sha256 checksum (64 hexadecimal digits)")
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"--url {url!r} is not an http:// or https:// address")
    if out.is_dir():
        raise FetchError(f"--out {out} is a folder; give the file to write")
    if out.is_file():
        if file_sha256(out) == expected:
            return Fetched(out, downloaded=False, size=out.stat().st_size)
        log.warning("%s does not match the expected sha256; downloading it again", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            with _Deadline(deadline) as watch:
                digest, size = _download(url, handle, timeout=timeout, progress=progress, label=out.name, watch=watch)
            handle.flush()
            os.fsync(handle.fileno())
        if digest != expected:
            raise FetchError(
                f"{url} sent {size:,} bytes whose sha256 is {digest}, not {expected}: refused, nothing written "
                "(the file changed or was corrupted on the way; pass --sha256 only if you trust the new one)"
            )
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return Fetched(out, downloaded=True, size=size)


class _Deadline:
    """Shuts the download's socket when `seconds` have passed, whatever it is waiting for at that moment."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """The socket a connection (or a redirect's) just opened: the one to shut at the deadline."""
        with self._lock:
            self._sock = sock
            expired = self.passed
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            sock = self._sock
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once, here or in the reading thread


class _HttpsStays(urllib.request.HTTPRedirectHandler):
    """Follows redirects (urllib's own rules), except one from https to anything else."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise FetchError(f"{req.full_url} redirects to {newurl}, which leaves https: refused, nothing written")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(watch: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener, but its connections report their sockets to `watch`, and https stays https."""

    class Watched(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watch.watch(self.sock)

    class WatchedTLS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watch.watch(self.sock)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Watched, req)

    class TLS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(WatchedTLS, req, context=self._context)

    return urllib.request.build_opener(Plain, TLS, _HttpsStays)


def _download(
    url: str, handle: BinaryIO, *, timeout: float, progress: bool, label: str, watch: _Deadline
) -> tuple[str, int]:
    """Stream `url` into `handle`; return the sha256 of what arrived and its size. Raises FetchError."""
    try:
        result = _stream(url, handle, timeout=timeout, progress=progress, label=label, watch=watch)
    except FetchError:
        if watch.passed:
            raise _too_long(url, watch.seconds) from None
        raise
    if watch.passed:  # cut short by the deadline where http.client took the end for a complete answer
        raise _too_long(url, watch.seconds)
    return result


def _stream(
    url: str, handle: BinaryIO, *, timeout: float, progress: bool, label: str, watch: _Deadline
) -> tuple[str, int]:
    host = urlsplit(url).netloc
    request = urllib.request.Request(url, headers={"User-Agent": "lyrics-bot (python -m model fetch)"})
    digest, size, total = hashlib.sha256(), 0, None
    try:
        with _opener(watch).open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_BYTES:
                raise FetchError(f"{url} offers {total:,} bytes, far more than the corpus; refused, nothing written")
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False) as bar:
                # read1: whatever one read brings, so the loop sees the deadline between two drips.
                while chunk := response.read1(CHUNK):
                    if watch.passed:
                        raise _too_long(url, watch.seconds)
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise FetchError(f"{url} sent more than {MAX_BYTES:,} bytes; refused, nothing written")
                    digest.update(chunk)
                    handle.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; nothing written") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _timed_out(url, timeout) from exc
        raise FetchError(f"cannot reach {host} ({exc.reason}): are you offline? Nothing written") from exc
    except TimeoutError as exc:
        raise _timed_out(url, timeout) from exc
    except (http.client.HTTPException, OSError) as exc:  # the server hung up mid-transfer, a reset...
        raise FetchError(f"{url}: the download broke off after {size:,} bytes ({exc!r}); nothing written") from exc
    # urllib returns what arrived when a server hangs up early, without a word: count the bytes ourselves.
    if total is not None and size != total:
        raise FetchError(f"{url}: the download broke off after {size:,} of {total:,} bytes; nothing written")
    return digest.hexdigest(), size


def _too_long(url: str, deadline: float) -> FetchError:
    return FetchError(
        f"{url}: the download took longer than {deadline:g} s in all (a stalling server?); nothing written"
    )


def _timed_out(url: str, timeout: float) -> FetchError:
    return FetchError(f"{url}: no answer within {timeout:g} s (offline, or a very slow network?); nothing written")
