"""Fetching a /corpus add attachment: only from Discord's attachment hosts, and never more than the cap.

The size Discord reports is the uploader's word, and a URL in a payload is whatever the payload says (a
handed-over interaction came through the database). So the URL's host must be one of the allowed ones
(Settings.attachment_hosts: Discord's CDN), redirects are not followed, and the body is read in chunks
and dropped as soon as it passes `limit` bytes, whatever the declared size or Content-Length said.

    data = await download(url, limit=MAX_UPLOAD_BYTES, hosts=settings.attachment_hosts, timeout=60)
"""

from __future__ import annotations

import asyncio

import aiohttp
import yarl

CHUNK = 64 * 1024
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})  # a local stand-in of Discord's CDN (tests) may use http


class DownloadRefused(Exception):
    """The attachment is not fetched (or not kept): its host is not allowed, or it is larger than allowed."""


def check_url(url: str, hosts: tuple[str, ...]) -> yarl.URL:
    """The URL, if /corpus add may fetch it: https (http on loopback only) on one of `hosts`; else DownloadRefused."""
    parsed = yarl.URL(url)
    host = (parsed.host or "").lower()
    if host not in hosts:
        raise DownloadRefused(f"the file is not on Discord's attachment servers ({host or 'no host'})")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and host in LOOPBACK):
        raise DownloadRefused(f"the file's address is not https ({parsed.scheme})")
    return parsed


async def download(url: str, *, limit: int, hosts: tuple[str, ...], timeout: float) -> bytes:
    """The attachment's bytes, at most `limit` of them.

    Raises DownloadRefused (host not allowed, or more than `limit` bytes), aiohttp.ClientError or TimeoutError.
    """
    target = check_url(url, hosts)
    async with (
        asyncio.timeout(timeout),
        aiohttp.ClientSession() as session,
        session.get(target, allow_redirects=False) as response,
    ):
        response.raise_for_status()
        if response.status != 200:  # a redirect, not followed: Discord's CDN serves files itself
            raise DownloadRefused(f"the file's server answered {response.status} instead of the file")
        if response.content_length is not None and response.content_length > limit:
            raise DownloadRefused(f"the file is {response.content_length:,} bytes")
        data = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > limit:  # a file larger than it said: stop here, drop the connection
                raise DownloadRefused(f"the file sends more than {limit:,} bytes")
        return bytes(data)
