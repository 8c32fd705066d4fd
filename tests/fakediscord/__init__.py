"""A local stand-in for Discord (REST + gateway) that the real discord.py client talks to over loopback."""

from .fixtures import running_bot
from .payloads import make_guild, make_member, make_text_channel, make_user, snowflake_on_shard
from .server import Attachment, FakeDiscord, Fault, HttpRequest, Interaction, SentMessage, Violation

__all__ = [
    "Attachment",
    "FakeDiscord",
    "Fault",
    "HttpRequest",
    "Interaction",
    "SentMessage",
    "Violation",
    "make_guild",
    "make_member",
    "make_text_channel",
    "make_user",
    "running_bot",
    "snowflake_on_shard",
]
