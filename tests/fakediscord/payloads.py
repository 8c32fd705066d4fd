"""Builders for Discord-shaped JSON payloads (users, guilds, messages, interactions).

Only the fields discord.py 2.7 reads (or that a test is likely to look at) are filled in; ids are
snowflakes rendered as strings, timestamps ISO 8601 in UTC, exactly like the real API.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
_increment = itertools.count()

# What an ordinary member may do in a channel: view, send, embed links, attach files, read history,
# use application commands. Admin tests pass their own (e.g. 8 = ADMINISTRATOR).
DEFAULT_MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31)
ADMINISTRATOR = 1 << 3
VIEW_CHANNEL = 1 << 10
READ_MESSAGE_HISTORY = 1 << 16
ROLE_OVERWRITE, MEMBER_OVERWRITE = 0, 1
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15


def snowflake() -> str:
    """A fresh, strictly increasing snowflake id (timestamp + counter), as Discord sends it: a string."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_increment) & 0x3FFFFF))  # worker/process bits left at 0


def snowflake_on_shard(shard: int, count: int) -> str:
    """A fresh guild id that Discord routes to shard `shard` of `count`: (id >> 22) % count == shard."""
    fresh = int(snowflake())
    ms = fresh >> 22
    ms += (shard - ms % count) % count
    return str((ms << 22) | (fresh & 0x3FFFFF))


def now_iso() -> str:
    """The current time as Discord formats timestamps (ISO 8601, UTC offset)."""
    return datetime.now(UTC).isoformat()


def make_token() -> str:
    """An opaque interaction token."""
    return "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)


def make_user(username: str, *, id: int | str | None = None, bot: bool = False) -> dict[str, Any]:
    """A user object."""
    return {
        "id": str(id or snowflake()),
        "username": username,
        "global_name": None if bot else username.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
        "flags": 0,
    }


def make_team(owner: dict[str, Any], members: Iterable[tuple[dict[str, Any], str]] = ()) -> dict[str, Any]:
    """A team that owns an application: ``owner`` is an admin of it; ``members`` are (user, role) pairs,
    role one of "admin", "developer", "read_only". Everyone has accepted the invitation (membership_state 2)."""
    team_id = snowflake()
    entries = [(owner, "admin"), *members]
    return {
        "id": team_id,
        "name": "Team",
        "icon": None,
        "owner_user_id": owner["id"],
        "members": [
            {"membership_state": 2, "team_id": team_id, "user": user, "role": role, "permissions": ["*"]}
            for user, role in entries
        ],
    }


def team_user(team: dict[str, Any]) -> dict[str, Any]:
    """The `owner` Discord reports for a team-owned application: a pseudo-user named after the team."""
    return {**make_user(f"team{team['id']}", id=team["id"]), "global_name": None, "flags": 1024}


def make_member(user: dict[str, Any], *, roles: Iterable[str] = (), permissions: int | None = None) -> dict[str, Any]:
    """A guild member object; ``permissions`` is only present in interaction payloads."""
    member = {
        "user": user,
        "nick": None,
        "roles": list(roles),
        "joined_at": now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
    }
    if permissions is not None:
        member["permissions"] = str(permissions)
    return member


def make_role(guild_id: str, name: str, *, permissions: int = 0, position: int = 1) -> dict[str, Any]:
    """A guild role; the @everyone role is built by make_guild (its id is the guild's)."""
    return {
        "id": guild_id if name == "@everyone" else snowflake(),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def overwrite(target_id: str, kind: int, *, allow: int = 0, deny: int = 0) -> dict[str, Any]:
    """A channel permission overwrite for a role (ROLE_OVERWRITE) or a member (MEMBER_OVERWRITE)."""
    return {"id": target_id, "type": kind, "allow": str(allow), "deny": str(deny)}


def make_text_channel(
    guild_id: str,
    name: str,
    *,
    id: int | str | None = None,
    position: int = 0,
    overwrites: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A guild text channel (type 0)."""
    return {
        "id": str(id or snowflake()),
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "permission_overwrites": list(overwrites),
        "nsfw": False,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "flags": 0,
    }


def make_guild(
    name: str = "Test Guild",
    *,
    id: int | str | None = None,
    channels: Iterable[str] = ("general",),
    members: Iterable[dict[str, Any]] = (),
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete GUILD_CREATE payload: an @everyone role, text channels by name, members from user objects.

    The bot's own member is added by the server when it sends the guild, as Discord does.
    """
    guild_id = str(id or snowflake())
    members = list(members)
    owner_id = (owner or (members[0] if members else {"id": snowflake()}))["id"]
    everyone = make_role(guild_id, "@everyone", permissions=DEFAULT_MEMBER_PERMISSIONS, position=0)
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "owner_id": owner_id,
        "unavailable": False,
        "large": False,
        "member_count": len(members) + 1,
        "features": [],
        "preferred_locale": "en-US",
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "afk_timeout": 300,
        "system_channel_id": None,
        "joined_at": now_iso(),
        "roles": [everyone],
        "emojis": [],
        "stickers": [],
        "channels": [make_text_channel(guild_id, ch, position=i) for i, ch in enumerate(channels)],
        "threads": [],
        "members": [make_member(u) for u in members],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def make_message(
    *,
    id: str,
    channel_id: str,
    author: dict[str, Any],
    body: dict[str, Any],
    attachments: list[dict[str, Any]],
    guild_id: str | None = None,
    webhook_id: str | None = None,
    message_type: int = 0,
    timestamp: str | None = None,
    edited_timestamp: str | None = None,
) -> dict[str, Any]:
    """A message object built from what the bot sent (``body``: content/embeds/components/flags)."""
    message = {
        "id": id,
        "type": message_type,
        "channel_id": channel_id,
        "author": author,
        "content": body.get("content") or "",
        "embeds": body.get("embeds") or [],
        "components": body.get("components") or [],
        "attachments": attachments,
        "flags": body.get("flags") or 0,
        "timestamp": timestamp or now_iso(),
        "edited_timestamp": edited_timestamp,
        "tts": bool(body.get("tts")),
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
    }
    if guild_id:
        message["guild_id"] = guild_id
    if webhook_id:
        message["webhook_id"] = webhook_id
        message["application_id"] = webhook_id
    return message


def make_interaction(
    *,
    type: int,
    application_id: str,
    data: dict[str, Any],
    user: dict[str, Any],
    channel: dict[str, Any],
    guild: dict[str, Any] | None,
    permissions: int,
    message: dict[str, Any] | None = None,
    roles: Iterable[str] = (),
    locale: str = "en-US",
) -> dict[str, Any]:
    """An INTERACTION_CREATE payload; a guild one carries ``member`` (with permissions), a DM one ``user``.

    ``locale`` is the member's Discord language, which Discord sends with every interaction."""
    payload: dict[str, Any] = {
        "id": snowflake(),
        "application_id": application_id,
        "type": type,
        "data": data,
        "token": make_token(),
        "version": 1,
        "channel_id": channel["id"],
        "channel": channel,
        "locale": locale,
        "app_permissions": str(DEFAULT_MEMBER_PERMISSIONS),
        "entitlements": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
    }
    if guild is not None:
        payload.update(
            guild_id=guild["id"],
            guild={"id": guild["id"], "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=make_member(user, roles=roles, permissions=permissions),
            authorizing_integration_owners={"0": guild["id"]},
            context=0,
        )
    else:
        payload.update(user=user, authorizing_integration_owners={"1": user["id"]}, context=1)
    if message is not None:
        payload["message"] = message
    return payload


def error(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Discord JSON error body."""
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return body


def channel_permissions(guild: dict[str, Any], channel: dict[str, Any], user_id: str) -> int:
    """A member's permissions in a guild channel, computed as Discord does: the guild owner and Administrator
    have all; else @everyone's and the member's roles' permissions, then the channel's overwrites for
    @everyone, for the member's roles (together), and for the member."""
    everything = (1 << 53) - 1
    if guild["owner_id"] == user_id:
        return everything
    member = next((m for m in guild["members"] if m["user"]["id"] == user_id), None)
    roles = set(member["roles"]) if member else set()
    permissions = 0
    for role in guild["roles"]:
        if role["id"] == guild["id"] or role["id"] in roles:
            permissions |= int(role["permissions"])
    if permissions & ADMINISTRATOR:
        return everything
    overwrites = channel.get("permission_overwrites") or []
    for entry in overwrites:
        if entry["id"] == guild["id"]:
            permissions = (permissions & ~int(entry["deny"])) | int(entry["allow"])
    allow = deny = 0
    for entry in overwrites:
        if entry["type"] == ROLE_OVERWRITE and entry["id"] in roles:
            allow, deny = allow | int(entry["allow"]), deny | int(entry["deny"])
    permissions = (permissions & ~deny) | allow
    for entry in overwrites:
        if entry["type"] == MEMBER_OVERWRITE and entry["id"] == user_id:
            permissions = (permissions & ~int(entry["deny"])) | int(entry["allow"])
    return permissions
