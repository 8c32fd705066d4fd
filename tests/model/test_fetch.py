"""`python -m model fetch` against a local HTTP server on loopback serving the shared copy of the corpus.

Nothing here reaches the internet: every download's --url is http://127.0.0.1:<port>/...
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from model.corpus import load_corpus
from model.fetch import DEFAULT_SHA256, FetchError, fetch
from model.files import file_sha256
from tests.helpers import REFERENCE_CORPUS, REPO

pytestmark = pytest.mark.skipif(not REFERENCE_CORPUS.exists(), reason="the reference corpus is not beside the repo")
PATH = "/d2l-ai/d2l-zh/master/data/jaychou_lyrics.txt.zip"


@dataclass
class Server:
    """What the loopback server serves, and the paths it was asked for."""

    body: bytes
    # ok | die (hang up half-way) | missing (404) | silent (never answer) | drip (a byte of the body every
    # 0.1 s) | drip-headers (the same, in its headers) | redirect (to `location`)
    mode: str = "ok"
    location: str = ""
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(body=REFERENCE_CORPUS.read_bytes())
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if state.mode == "silent":
                release.wait(10)
                return
            if state.mode == "redirect" and self.path == PATH:
                self.send_response(302)
                self.send_header("Location", state.location)
                self.end_headers()
                return
            if state.mode == "drip-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not release.is_set():  # never a whole header line: each byte well within the timeout
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    release.wait(0.1)
                return
            if state.mode == "missing" or self.path != PATH:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            if state.mode == "drip":
                for byte in state.body:
                    if release.wait(0.1):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                return
            if state.mode == "die":
                self.wfile.write(state.body[: len(state.body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # the server dies mid-transfer
                return
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_shared_copy_is_the_published_corpus() -> None:
    assert file_sha256(REFERENCE_CORPUS) == DEFAULT_SHA256


def test_a_good_download_through_the_command_line(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "data" / "jaychou_lyrics.txt.zip"
    result = subprocess.run(
        [sys.executable, "-m", "model", "fetch", "--url", server.url, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and "sha256 verified" in result.stdout
    assert out.read_bytes() == REFERENCE_CORPUS.read_bytes()
    assert leftovers(out.parent) == ["jaychou_lyrics.txt.zip"]  # no temp file left
    assert load_corpus(out).heldout.endswith("因為超人不能流眼泪\n")  # a corpus the trainer reads


def test_a_wrong_hash_is_refused_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "corpus.zip"
    with pytest.raises(FetchError, match=f"sha256 is {DEFAULT_SHA256}, not {'0' * 64}: refused, nothing written"):
        fetch(server.url, out, "0" * 64, progress=False)
    assert leftovers(tmp_path) == []


def test_a_changed_file_is_refused_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    server.body = server.body[:-1] + b"x"  # the same size, one byte different
    with pytest.raises(FetchError, match="refused, nothing written"):
        fetch(server.url, tmp_path / "corpus.zip", progress=False)
    assert leftovers(tmp_path) == []


def test_a_server_dying_mid_transfer_leaves_nothing(server: Server, tmp_path: Path) -> None:
    server.mode = "die"
    size = len(server.body)
    with pytest.raises(FetchError, match=f"broke off after {size // 2:,} of {size:,} bytes; nothing written"):
        fetch(server.url, tmp_path / "corpus.zip", progress=False)
    assert leftovers(tmp_path) == []


def test_a_verified_file_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "corpus.zip"
    first = fetch(server.url, out, progress=False)
    assert first.downloaded and len(server.requests) == 1
    before = out.stat().st_mtime_ns
    again = fetch(server.url, out, progress=False)
    assert not again.downloaded and len(server.requests) == 1  # no request at all
    assert out.stat().st_mtime_ns == before
    # The command line says so.
    result = subprocess.run(
        [sys.executable, "-m", "model", "fetch", "--url", server.url, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "already there and verified" in result.stdout
    assert len(server.requests) == 1


def test_a_damaged_file_is_replaced_by_a_verified_one(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "corpus.zip"
    out.write_bytes(b"half a download")
    assert fetch(server.url, out, progress=False).downloaded
    assert file_sha256(out) == DEFAULT_SHA256


def test_http_errors_offline_and_timeouts_are_one_clear_line(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "corpus.zip"
    server.mode = "missing"
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found; nothing written"):
        fetch(server.url, out, progress=False)

    # Offline: nothing listens on the port (connection refused), as when there is no network at all.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1:\d+ .*are you offline\?"):
        fetch(f"http://127.0.0.1:{closed}{PATH}", out, progress=False)

    server.mode = "silent"
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"no answer within 0\.5 s"):
        fetch(server.url, out, progress=False, timeout=0.5)
    assert time.monotonic() - started < 5
    assert leftovers(tmp_path) == []

    # The command line prints one line and exits with the error status.
    result = subprocess.run(
        [sys.executable, "-m", "model", "fetch", "--url", f"http://127.0.0.1:{closed}/x.zip", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: cannot reach 127.0.0.1")
    assert len(result.stderr.strip().splitlines()) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sha256": "abc"}, "not a sha256 checksum"),
        ({"url": "file:///etc/passwd"}, "not an http:// or https:// address"),
    ],
)
def test_bad_options_are_refused_before_any_request(server: Server, tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(FetchError, match=message):
        fetch(**{"url": server.url, "out": tmp_path / "c.zip", "progress": False, **kwargs})
    assert server.requests == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_a_server_dripping_bytes_cannot_hold_it_past_the_deadline(server: Server, tmp_path: Path, mode: str) -> None:
    # A byte every 0.1 s never trips the 5 s timeout on a read: only the overall deadline ends it (the body
    # would take 90 minutes at that pace).
    server.mode = mode
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 1 s in all .*; nothing written"):
        fetch(server.url, tmp_path / "corpus.zip", progress=False, timeout=5, deadline=1)
    assert time.monotonic() - started < 3
    assert leftovers(tmp_path) == []


def test_a_redirect_is_followed_but_never_out_of_https(server: Server, tmp_path: Path) -> None:
    # Within plain http (this loopback server), a redirect is followed as before.
    server.mode, server.location = "redirect", f"http://127.0.0.1:{server.port}/moved.zip"
    with pytest.raises(FetchError, match="HTTP 404"):  # followed: /moved.zip is not there
        fetch(server.url, tmp_path / "corpus.zip", progress=False)
    assert server.requests == [PATH, "/moved.zip"]
    # From https, a redirect to http is refused before it is followed. (No TLS server here: the handler that
    # fetch's opener follows redirects with is asked directly, as urllib asks it.)
    from model.fetch import _Deadline, _opener

    opener = _opener(_Deadline(60))
    [handler] = [h for h in opener.handlers if isinstance(h, urllib.request.HTTPRedirectHandler)]
    request = urllib.request.Request("https://raw.githubusercontent.com/corpus.zip")
    with pytest.raises(FetchError, match=r"redirects to http://127\.0\.0\.1/x\.zip, which leaves https: refused"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://127.0.0.1/x.zip")
    moved = handler.redirect_request(request, None, 302, "Found", {}, "https://mirror.example/corpus.zip")
    assert moved is not None and moved.full_url == "https://mirror.example/corpus.zip"
    assert leftovers(tmp_path) == []
