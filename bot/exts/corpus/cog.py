"""The Corpus cog: /corpus add | list | remove, for owners. The files are bot.corpora's; this is the Discord side.

Every command is checked on our side (Discord's default_permissions is only a hint), answered ephemerally
(a corpus is the owners' business, and a preview quotes the file), and deferred first where it reads
files: a 2 MB upload takes a few seconds to check and segment, in a thread, off the event loop. One
change at a time: a lock keeps two uploads from racing for a name or missing each other's lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.corpora import MAX_UPLOAD_BYTES, BaseCorpus, Corpora, Entry, Uploader, UploadRefused, check_attachment
from bot.exts.corpus import texts
from bot.exts.corpus.download import DownloadRefused, download
from bot.i18n import localized
from bot.permissions import owner_only
from bot.replies import acknowledge, tell
from model.corpus import CorpusError

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0
CHOICES = 25  # Discord's limit on autocomplete choices


class CorpusCog(commands.Cog, name="Corpus"):
    """/corpus add | list | remove."""

    corpus = app_commands.Group(
        name=localized("commands.corpus.name"),
        description=localized("commands.corpus.description"),
        # A hint for Discord's client only: every command below is checked on our side.
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        settings = bot.settings
        self.corpora = Corpora(settings.corpora_path, settings.corpus_path, max_total_bytes=settings.corpora_max_bytes)
        self._lock = asyncio.Lock()

    @corpus.command(name=localized("commands.corpus.add"), description=localized("commands.corpus.add_description"))
    @app_commands.rename(file=localized("commands.corpus.file"))
    @app_commands.describe(file=localized("commands.corpus.file_description"))
    @owner_only()
    async def add(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        locale = interaction.locale
        # What Discord says of the file decides before a byte is downloaded.
        if refusal := check_attachment(file.filename, file.size):
            await tell(interaction, texts.not_added(locale, refusal.render(locale)))
            return
        await acknowledge(interaction, ephemeral=True)
        try:
            data = await download(
                file.url, limit=MAX_UPLOAD_BYTES, hosts=self.bot.settings.attachment_hosts, timeout=DOWNLOAD_TIMEOUT_S
            )
        except DownloadRefused as exc:
            log.warning("refused to download %r from %s: %s", file.filename, file.url, exc)
            await tell(interaction, texts.not_added(locale, texts.download_refused(locale, file.filename, exc)))
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not download %r: %s", file.filename, exc)
            await tell(interaction, texts.could_not_download(locale, exc))
            return
        user = interaction.user
        try:
            async with self._lock:
                added = await asyncio.to_thread(
                    self.corpora.add, file.filename, data, Uploader(user.id, user.display_name)
                )
        except UploadRefused as exc:
            log.info("refused %r from %s (%d): %s", file.filename, user, user.id, exc)
            await tell(interaction, texts.not_added(locale, exc.render(locale)))
            return
        await tell(interaction, texts.added_text(locale, added))

    @corpus.command(name=localized("commands.corpus.list"), description=localized("commands.corpus.list_description"))
    @owner_only()
    async def list_files(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction, ephemeral=True)  # the base corpus is read once: a moment
        async with self._lock:
            base, entries = await asyncio.to_thread(self._listing)
        await tell(interaction, texts.list_text(interaction.locale, base, entries))

    def _listing(self) -> tuple[BaseCorpus | str, list[Entry]]:
        try:
            base: BaseCorpus | str = self.corpora.base()
        except CorpusError as exc:
            base = str(exc)
        return base, self.corpora.entries()

    @corpus.command(
        name=localized("commands.corpus.remove"), description=localized("commands.corpus.remove_description")
    )
    @app_commands.rename(name=localized("commands.corpus.file_name"))
    @app_commands.describe(name=localized("commands.corpus.file_name_description"))
    @owner_only()
    async def remove(self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 100]) -> None:
        await acknowledge(interaction, ephemeral=True)  # the lock may be held by an upload being checked: seconds
        try:
            async with self._lock:
                entry = await asyncio.to_thread(self.corpora.remove, name)
        except UploadRefused as exc:
            await tell(interaction, exc.render(interaction.locale))
            return
        log.info("%s (%d) removed %s", interaction.user, interaction.user.id, entry.name)
        await tell(interaction, texts.removed_text(interaction.locale, entry))

    @remove.autocomplete("name")
    @owner_only()  # parent checks do not cover autocomplete: without this, anyone could list the names
    async def _names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = await asyncio.to_thread(self.corpora.names)
        wanted = current.casefold()
        return [app_commands.Choice(name=n, value=n) for n in names if wanted in n.casefold()][:CHOICES]
