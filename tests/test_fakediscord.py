"""Proves tests/fakediscord against a small real discord.ext.commands.Bot (not the product bot)."""

from __future__ import annotations

import asyncio
import io

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import FakeDiscord, make_guild, make_user, running_bot, snowflake_on_shard

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
NONE = {"parse": []}  # discord.AllowedMentions.none()


class Panel(discord.ui.View):
    """A persistent view: survives restarts because its button has a fixed custom_id and no timeout."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="panel:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"clicked by {interaction.user.name}", view=self)

    @discord.ui.button(label="Slowly", custom_id="panel:slow")
    async def slow(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()  # type 6 on a component: edit the message later
        await interaction.edit_original_response(content="slow edit done")


class Feedback(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="Your words", custom_id="feedback:text")


def make_bot() -> commands.Bot:
    bot = commands.Bot(
        command_prefix="!",
        intents=discord.Intents.default(),
        guild_ready_timeout=0.1,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    lyrics = app_commands.Group(name="lyrics", description="Lyrics tools")

    @bot.tree.command(description="Say hello")
    async def hello(interaction: discord.Interaction, name: str, times: int = 1, loud: bool = False) -> None:
        text = " ".join([f"hello {name}"] * times)
        await interaction.response.send_message(text.upper() if loud else text)

    @bot.tree.command(description="Think, then answer")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await asyncio.sleep(0.05)
        await interaction.followup.send("done thinking", file=discord.File(io.BytesIO(PNG), "plot.png"))

    @bot.tree.command(description="A secret")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you", ephemeral=True)

    @bot.tree.command(description="Too long a reply")
    async def toolong(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("x" * 2001)

    @bot.tree.command(description="Answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("one")
        interaction.response._response_type = None  # fool discord.py into answering again
        await interaction.response.send_message("two")

    @bot.tree.command(description="Asks for feedback")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Feedback())

    @bot.tree.command(description="Replies, then edits")
    async def edited(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("draft")
        await interaction.edit_original_response(content="final", embed=discord.Embed(description="body"))

    @bot.tree.command(description="Shows a panel")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=Panel())

    @lyrics.command(description="Write lyrics")
    async def write(interaction: discord.Interaction, temperature: float, lines: int = 4) -> None:
        await interaction.response.send_message(f"t={temperature} lines={lines}")

    @bot.tree.command(description="Reads a file")
    async def upload(interaction: discord.Interaction, file: discord.Attachment) -> None:
        data = await file.read()
        await interaction.response.send_message(f"{file.filename} {file.size} {file.content_type} {data.decode()}")

    async def colours(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["red", "green", "blue"]
        return [app_commands.Choice(name=n, value=n) for n in names if current in n]

    @bot.tree.command(description="Picks a colour")
    @app_commands.autocomplete(colour=colours)
    async def pick(interaction: discord.Interaction, colour: str) -> None:
        await interaction.response.send_message(colour)

    bot.tree.add_command(lyrics)

    async def setup_hook() -> None:
        bot.add_view(Panel())
        await bot.tree.sync()

    bot.setup_hook = setup_hook
    return bot


@pytest.fixture
async def bot(fake_discord: FakeDiscord):
    async with running_bot(make_bot(), fake_discord) as running:
        yield running


async def test_login_ready_and_sync(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    await fake_discord.wait_ready()
    assert bot.user.id == int(fake_discord.bot_user["id"])
    assert bot.application_id == int(fake_discord.application_id)
    guild = bot.get_guild(int(fake_discord.guild["id"]))
    assert guild is not None and guild.me is not None
    assert [c.name for c in guild.text_channels] == ["general"]
    assert fake_discord.identifies[0]["token"] == fake_discord.token
    paths = [(r.method, r.path) for r in fake_discord.requests]
    assert paths[:2] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    synced = {c["name"]: c for c in fake_discord.global_commands}
    assert set(synced) == {
        *("hello", "slow", "secret", "toolong", "twice", "panel", "lyrics", "feedback", "edited", "upload", "pick")
    }
    assert [(o["name"], o["type"]) for o in synced["hello"]["options"]] == [("name", 3), ("times", 4), ("loud", 5)]
    assert synced["lyrics"]["options"][0]["type"] == 1
    assert fake_discord.violations == [] and fake_discord.unknown_routes == []


async def test_slash_command_reply(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("hello", {"name": "jay", "times": 2, "loud": True})
    response = await inter.wait_response()
    assert response["type"] == 4
    assert inter.content == "HELLO JAY HELLO JAY" and not inter.ephemeral
    assert fake_discord.allowed_mentions == [NONE]
    assert fake_discord.violations == [] and fake_discord.unknown_routes == []


async def test_subcommand_and_number_option(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("lyrics write", {"temperature": 0.8, "lines": 6})
    assert (await inter.wait_final()).content == "t=0.8 lines=6"
    option = inter.payload["data"]["options"][0]
    assert option["type"] == 1 and option["options"][0] == {"name": "temperature", "type": 10, "value": 0.8}
    with pytest.raises(ValueError):
        await fake_discord.send_slash_command("lyrics write", {"temprature": 1.0})


async def test_an_attached_file_is_resolved_and_served_on_loopback(
    fake_discord: FakeDiscord, bot: commands.Bot
) -> None:
    upload = fake_discord.upload("../歌词 1.txt", "窗外的麻雀".encode())
    inter = await fake_discord.send_slash_command("upload", {"file": upload})
    assert (await inter.wait_final()).content == "../歌词 1.txt 15 text/plain 窗外的麻雀"
    option = inter.payload["data"]["options"][0]
    assert option == {"name": "file", "type": 11, "value": upload.id}  # the id; the file itself is in `resolved`
    resolved = inter.payload["data"]["resolved"]["attachments"][upload.id]
    assert resolved["url"].startswith(fake_discord.base_url + "/attachments/") and resolved["size"] == 15
    assert fake_discord.downloads == [upload.id]
    assert fake_discord.violations == [] and fake_discord.unknown_routes == []


async def test_autocomplete_choices(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_autocomplete("pick", {"colour": "re"}, "colour")
    response = await inter.wait_response()
    assert response["type"] == 8
    assert response["data"]["choices"] == [{"name": "red", "value": "red"}, {"name": "green", "value": "green"}]
    assert inter.payload["data"]["options"][0]["focused"] is True
    assert fake_discord.violations == []


async def test_deferred_then_followup_with_file(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("slow")
    assert (await inter.wait_response())["type"] == 5
    message = await inter.wait_final()
    assert message.content == "done thinking" and message is inter.original  # the followup filled the placeholder
    assert not message.loading
    [png] = message.attachments
    assert png.filename == "plot.png" and png.content_type == "image/png" and png.data == PNG
    assert fake_discord.violations == []


async def test_ephemeral_reply_and_dm(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("secret")
    await inter.wait_final()
    assert inter.ephemeral and inter.flags & 64
    dm = await fake_discord.send_slash_command("hello", {"name": "dm"}, dm=True)
    assert (await dm.wait_final()).content == "hello dm"
    assert "guild_id" not in dm.payload and dm.payload["user"]["id"] == fake_discord.user["id"]


async def test_button_on_persistent_view(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    shown = await fake_discord.send_slash_command("panel")
    message = await shown.wait_final()
    assert message.custom_ids() == ["panel:again", "panel:slow"]
    click = await fake_discord.click_button(message, "panel:again", user=fake_discord.owner)
    assert (await click.wait_response())["type"] == 7
    assert message.content == "clicked by owner" and click.message is message
    slow = await fake_discord.click_button(message, "panel:slow")
    assert (await slow.wait_response())["type"] == 6
    assert await slow.wait_final() is message and message.content == "slow edit done"
    assert fake_discord.violations == []


async def test_modal_and_edit_of_original(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    modal = await fake_discord.send_slash_command("feedback")
    assert (await modal.wait_response())["type"] == 9
    assert await modal.wait_final() is None and modal.modal["title"] == "Feedback"
    edited = await fake_discord.send_slash_command("edited")
    message = await edited.wait_final(until=lambda i: i.edits)
    assert message.content == "final" and message.embeds[0]["description"] == "body"
    assert [b.get("content") for b in message.history] == ["draft", "final"]
    assert fake_discord.allowed_mentions == [NONE, NONE]


async def test_guild_command_and_channel_messages(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    guild = discord.Object(int(fake_discord.guild["id"]))

    @app_commands.command(description="Guild only")
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("local")

    bot.tree.add_command(local, guild=guild)
    await bot.tree.sync(guild=guild)
    assert [c["name"] for c in fake_discord.commands[guild.id]] == ["local"]
    inter = await fake_discord.send_slash_command("local", permissions=discord.Permissions(administrator=True))
    assert inter.payload["data"]["guild_id"] == str(guild.id) and inter.payload["member"]["permissions"] == "8"
    assert (await inter.wait_final()).content == "local"

    channel = bot.get_channel(int(fake_discord.channel["id"]))
    sent = await channel.send("posted", file=discord.File(io.BytesIO(b"abc"), "notes.txt"))
    await sent.edit(content="changed")
    [record] = [m for m in fake_discord.messages if m.id == str(sent.id)]
    assert record.content == "changed" and record.attachments[0].data == b"abc"
    await sent.delete()
    assert record.deleted and fake_discord.violations == [] and fake_discord.unknown_routes == []


async def test_rule_violations_are_recorded(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    long = await fake_discord.send_slash_command("toolong")
    await fake_discord.wait_until(lambda: fake_discord.violations, what="no violation recorded")
    assert long.callbacks == []
    assert (
        fake_discord.violations[0].rule == "invalid-form-body" and "data.content" in fake_discord.violations[0].detail
    )
    twice = await fake_discord.send_slash_command("twice")
    await fake_discord.wait_until(lambda: len(fake_discord.violations) == 2)
    assert fake_discord.violations[1].rule == "double-ack" and twice.content == "one"


async def test_late_acknowledgement_is_a_violation(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    fake_discord.ack_deadline = 0.0  # any real reply is "late" now
    inter = await fake_discord.send_slash_command("hello", {"name": "late"})
    await fake_discord.wait_until(lambda: fake_discord.violations)
    assert fake_discord.violations[0].rule == "ack-deadline" and not inter.acknowledged


async def test_unknown_route_is_recorded(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/nowhere/{x}", x=1))
    assert fake_discord.unknown_routes == ["GET /api/v10/nowhere/1"]


async def test_heartbeats_are_acked_and_timed(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    await fake_discord.wait_until(lambda: len(fake_discord.heartbeats) >= 4, timeout=5)
    acks = [m for m in fake_discord.gateway_sent if m["op"] == 11]
    assert len(acks) >= 4
    interval = fake_discord.heartbeat_interval_ms / 1000
    assert fake_discord.max_heartbeat_gap() < interval + 0.5
    assert bot.latency < 1.0


async def test_reconnect_resumes(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with running_bot(bot, fake_discord, reconnect=True):
        await fake_discord.drop_connections(4000)
        await fake_discord.wait_until(lambda: any(m.get("t") == "RESUMED" for m in fake_discord.gateway_sent))
        await fake_discord.wait_ready()
        inter = await fake_discord.send_slash_command("hello", {"name": "again"})
        assert (await inter.wait_final()).content == "hello again"
    assert len(fake_discord.identifies) == 1


async def test_close_is_clean(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with running_bot(bot, fake_discord):
        await fake_discord.wait_ready()
    assert bot.is_closed()
    await fake_discord.wait_until(lambda: not fake_discord._sockets, what="gateway socket still open")
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert leftover == [], leftover


async def test_injected_errors_and_held_requests(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    channel = bot.get_channel(int(fake_discord.channel["id"]))
    fault = fake_discord.fail("POST", r"/channels/\d+/messages$", status=503, times=1)
    with pytest.raises(discord.DiscordServerError):  # discord.py retries 500/502/504, not 503
        await channel.send("first")
    assert fault.hits == 1
    sent = await channel.send("second")  # the fault was for one request only
    release = fake_discord.hold("PATCH", rf"/messages/{sent.id}$")
    editing = asyncio.create_task(sent.edit(content="held"))
    await asyncio.sleep(0.2)
    [record] = [m for m in fake_discord.messages if m.id == str(sent.id)]
    assert not editing.done() and record.content == "second"  # Discord is slow: the edit waits
    release.set()
    await editing
    assert record.content == "held"


# ---- shards


def make_sharded_bot(**options) -> commands.AutoShardedBot:
    """An AutoShardedBot with /where, which says which shard received it."""

    class Sharded(commands.AutoShardedBot):
        async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
            pass  # discord.py waits 5 s between two IDENTIFYs, Discord's limit; the stand-in has none

    bot = Sharded(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.1, **options)

    @bot.tree.command(description="Which shard am I on?")
    async def where(interaction: discord.Interaction) -> None:
        guild = interaction.guild
        await interaction.response.send_message(f"shard {guild.shard_id if guild else 0} of {bot.shard_count}")

    return bot


async def test_auto_sharded_bot_takes_the_recommended_count_and_gets_each_guild_on_its_shard() -> None:
    owner, user = make_user("owner"), make_user("alice")
    guilds = [make_guild(f"g{n}", id=snowflake_on_shard(n % 2, 2), members=[owner, user]) for n in range(4)]
    fake = FakeDiscord(guilds, shards=2, heartbeat_interval_ms=250)
    await fake.start()
    try:
        with fake.patch_discord():
            bot = make_sharded_bot()
            async with running_bot(bot, fake):
                await bot.tree.sync()
                assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
                assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
                assert {g.id: g.shard_id for g in bot.guilds} == {int(g["id"]): n % 2 for n, g in enumerate(guilds)}
                for n, guild in enumerate(guilds):
                    inter = await fake.send_slash_command("where", guild_id=guild["id"], user=user)
                    assert inter.shard == n % 2 and (await inter.wait_final()).content == f"shard {n % 2} of 2"
                dm = await fake.send_slash_command("where", dm=True, user=user)
                assert dm.shard == 0 and (await dm.wait_final()).content == "shard 0 of 2"
        assert ("GET", "/gateway/bot") in [(r.method, r.path) for r in fake.requests]
        assert fake.violations == [] and fake.unknown_routes == []
    finally:
        await fake.stop()


async def test_two_processes_each_run_some_shards() -> None:
    """Two clients (as two processes would) run shard 0 and shard 1 of 2: each is sent its own guilds only, and
    a guild's interactions go to its shard's client, unless a test delivers one elsewhere on purpose."""
    owner, user = make_user("owner"), make_user("alice")
    zero = make_guild("zero", id=snowflake_on_shard(0, 2), members=[owner, user])
    one = make_guild("one", id=snowflake_on_shard(1, 2), members=[owner, user])
    fake = FakeDiscord([zero, one], heartbeat_interval_ms=250)
    await fake.start()
    try:
        with fake.patch_discord():
            first, second = (
                make_sharded_bot(shard_count=2, shard_ids=[0]),
                make_sharded_bot(shard_count=2, shard_ids=[1]),
            )
            async with running_bot(first, fake), running_bot(second, fake):
                await fake.wait_ready(shards=[0, 1])
                await first.tree.sync()
                assert [g.name for g in first.guilds] == ["zero"] and [g.name for g in second.guilds] == ["one"]
                inter = await fake.send_slash_command("where", guild_id=one["id"], user=user)
                assert inter.shard == 1 and (await inter.wait_final()).content == "shard 1 of 2"
                inter = await fake.send_slash_command("where", guild_id=zero["id"], user=user)
                assert inter.shard == 0 and (await inter.wait_final()).content == "shard 0 of 2"
                elsewhere = await fake.send_slash_command("where", guild_id=zero["id"], user=user, shard=1)
                # Shard 1's client does not have guild "zero" in its cache, but it answers all the same.
                assert elsewhere.shard == 1 and (await elsewhere.wait_final()).content == "shard 0 of 2"
        assert fake.violations == [] and fake.unknown_routes == []
    finally:
        await fake.stop()
