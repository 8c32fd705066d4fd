"""Settings parsing: defaults, every variable, .env handling, and a clear SettingsError for each mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.settings import Limits, Settings, SettingsError, Sharding


def parse(**env: str) -> Settings:
    return Settings.from_env({"DISCORD_TOKEN": "abc.def.ghi", **env}, env_file=None)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a checkout where `python -m model fetch` has not run
    settings = parse()
    assert settings.token == "abc.def.ghi"
    assert settings.model_path == Path("models/lyrics.pt")
    assert settings.db_path == Path("data/lyrics.db")
    assert settings.corpus_path == Path("data/sample_lyrics.txt")
    assert settings.corpora_path == Path("data/corpora")
    assert settings.admin_ids == frozenset() and settings.guild_ids == () and settings.train_guild_ids == frozenset()
    assert settings.device == "auto" and settings.limits == Limits()
    assert settings.discord_api is None and settings.discord_gateway is None
    assert "abc.def.ghi" not in repr(settings)  # the token never ends up in a log line


def test_the_default_corpus_is_the_fetched_one_when_it_is_there(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jaychou_lyrics.txt.zip").write_bytes(b"PK")
    assert parse().corpus_path == Path("data/jaychou_lyrics.txt.zip")
    assert parse(LYRICS_CORPUS="mine.txt").corpus_path == Path("mine.txt")


def test_every_variable(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    settings = parse(
        LYRICS_MODEL=str(model),
        LYRICS_DB=str(tmp_path / "new" / "dir" / "x.db"),
        LYRICS_CORPUS=str(tmp_path / "c.zip"),
        LYRICS_CORPORA=str(tmp_path / "added"),
        LYRICS_ADMIN_IDS=" 123456789012345678, 234567890123456789 ,",
        LYRICS_GUILD_IDS="42,42,7",
        LYRICS_TRAIN_GUILD_IDS="42, 9",
        LYRICS_DEVICE="CUDA",
        LYRICS_PRECISION="Float32",
        LYRICS_TORCH_THREADS="3",
        LYRICS_COOLDOWN="2.5",
        LYRICS_USER_IN_FLIGHT="2",
        LYRICS_MAX_QUEUE="64",
        LYRICS_REQUEST_TIMEOUT="300",
        LYRICS_BATCH_TIMEOUT="30",
        LYRICS_BATCHING="off",
        LYRICS_MAX_BATCH="8",
        LYRICS_DISCORD_API="http://127.0.0.1:1234/api/v10",
        LYRICS_DISCORD_GATEWAY="ws://127.0.0.1:1234/gateway/",
    )
    assert settings.model_path == model
    assert settings.corpora_path == tmp_path / "added"
    assert settings.db_path == tmp_path / "new" / "dir" / "x.db"
    assert settings.admin_ids == {123456789012345678, 234567890123456789}
    assert settings.guild_ids == (42, 7)
    assert settings.train_guild_ids == {42, 9}
    assert settings.device == "cuda" and settings.torch_threads == 3 and settings.precision == "float32"
    assert settings.limits == Limits(
        cooldown_s=2.5,
        per_user=2,
        max_queue=64,
        batching=False,
        max_batch=8,
        request_timeout_s=300,
        batch_timeout_s=30,
    )
    assert settings.discord_api.startswith("http://") and settings.discord_gateway.startswith("ws://")


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        ({"DISCORD_TOKEN": ""}, "DISCORD_TOKEN is not set"),
        ({"DISCORD_TOKEN": "   "}, "DISCORD_TOKEN is not set"),
        ({"DISCORD_TOKEN": "abc def"}, "DISCORD_TOKEN contains spaces"),
        ({"LYRICS_ADMIN_IDS": "123,jay"}, "LYRICS_ADMIN_IDS"),
        ({"LYRICS_ADMIN_IDS": "<@123>"}, "'<@123>' is not an id"),
        ({"LYRICS_GUILD_IDS": "-5"}, "LYRICS_GUILD_IDS"),
        ({"LYRICS_TRAIN_GUILD_IDS": "my-server"}, "LYRICS_TRAIN_GUILD_IDS"),
        ({"LYRICS_GUILD_IDS": "0"}, "LYRICS_GUILD_IDS"),
        ({"LYRICS_GUILD_IDS": str(2**64)}, "LYRICS_GUILD_IDS"),
        ({"LYRICS_GUILD_IDS": "１２３"}, "LYRICS_GUILD_IDS"),  # full-width digits pass str.isdigit()
        ({"LYRICS_DEVICE": "tpu"}, "LYRICS_DEVICE"),
        ({"LYRICS_PRECISION": "half"}, "LYRICS_PRECISION='half' is not one of auto, float32, bfloat16"),
        ({"LYRICS_COOLDOWN": "soon"}, "LYRICS_COOLDOWN"),
        ({"LYRICS_COOLDOWN": "-1"}, "LYRICS_COOLDOWN"),
        ({"LYRICS_COOLDOWN": "nan"}, "LYRICS_COOLDOWN"),
        ({"LYRICS_USER_IN_FLIGHT": "0"}, "LYRICS_USER_IN_FLIGHT=0 must be at least 1"),
        ({"LYRICS_MAX_IN_FLIGHT": "32"}, "LYRICS_MAX_IN_FLIGHT is gone"),  # replaced by the queue
        ({"LYRICS_MAX_QUEUE": "0"}, "LYRICS_MAX_QUEUE=0 must be at least 1"),
        ({"LYRICS_REQUEST_TIMEOUT": "3600"}, "15 minutes"),
        ({"LYRICS_BATCH_TIMEOUT": "0"}, "LYRICS_BATCH_TIMEOUT"),
        ({"LYRICS_BATCHING": "maybe"}, "LYRICS_BATCHING"),
        ({"LYRICS_DISCORD_API": "127.0.0.1:80"}, "LYRICS_DISCORD_API"),
        ({"LYRICS_DISCORD_GATEWAY": "http://x"}, "LYRICS_DISCORD_GATEWAY"),
        ({"LYRICS_DATABASE_URL": "mysql://db/lyrics"}, "must be a PostgreSQL URL"),
        ({"LYRICS_DATABASE_URL": "postgresql://db:port/lyrics"}, "LYRICS_DATABASE_URL is not a valid URL"),
        ({"LYRICS_DATABASE_URL": "postgresql://bot@db.internal"}, "names no database"),
        ({"LYRICS_SHARD_COUNT": "0"}, "LYRICS_SHARD_COUNT=0 must be at least 1"),
        ({"LYRICS_SHARD_IDS": "0"}, "LYRICS_SHARD_IDS needs LYRICS_SHARD_COUNT"),
        ({"LYRICS_SHARD_COUNT": "2", "LYRICS_SHARD_IDS": "0,2"}, "shards are numbered 0 to 1"),
        ({"LYRICS_SHARD_COUNT": "2", "LYRICS_SHARD_IDS": "first"}, "shard numbers separated by commas"),
        ({"LYRICS_SHARD_COUNT": "2", "LYRICS_SHARD_IDS": ","}, "LYRICS_SHARD_IDS is empty"),
        ({"LYRICS_TRAINER": "sometimes"}, "LYRICS_TRAINER"),
        ({"LYRICS_MODEL_POLL": "0"}, "LYRICS_MODEL_POLL"),
        ({"LYRICS_TRAINER_LEASE": "0.5"}, "LYRICS_TRAINER_LEASE"),
        ({"LYRICS_GUILD_QUEUE": "-1"}, "LYRICS_GUILD_QUEUE"),
        ({"LYRICS_CORPORA_MAX_BYTES": "0"}, "LYRICS_CORPORA_MAX_BYTES"),
        ({"LYRICS_ATTACHMENT_HOSTS": "https://cdn.example/x"}, "is not a host name"),
    ],
)
def test_mistakes_are_named(env: dict[str, str], phrase: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(**env)
    message = str(caught.value)
    assert phrase in message and "\n" not in message


def test_paths_must_be_usable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"LYRICS_MODEL.*is not a file"):
        parse(LYRICS_MODEL=str(tmp_path))
    with pytest.raises(SettingsError, match=r"LYRICS_DB.*is not a file"):
        parse(LYRICS_DB=str(tmp_path))
    (tmp_path / "plain").write_text("")
    with pytest.raises(SettingsError, match=r"LYRICS_CORPORA.*is not a folder"):
        parse(LYRICS_CORPORA=str(tmp_path / "plain"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingsError, match=r"LYRICS_DB.*cannot be created"):
        parse(LYRICS_DB=str(blocker / "sub" / "x.db"))
    if os.geteuid() != 0:  # root reads everything, so permissions cannot be tested as root
        secret = tmp_path / "secret.pt"
        secret.write_bytes(b"")
        secret.chmod(0)
        with pytest.raises(SettingsError, match="not readable"):
            parse(LYRICS_MODEL=str(secret))
    # Missing files are fine: the model may not be trained yet, and the store creates the database.
    assert parse(LYRICS_MODEL=str(tmp_path / "later.pt")).model_path == tmp_path / "later.pt"


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DISCORD_TOKEN=from-file\nLYRICS_GUILD_IDS=1,2\nLYRICS_DEVICE=cpu\n# a comment\n")
    settings = Settings.from_env({"LYRICS_DEVICE": "mps"}, env_file=env_file)
    assert settings.token == "from-file" and settings.guild_ids == (1, 2)
    assert settings.device == "mps"
    assert Settings.from_env({"DISCORD_TOKEN": "x"}, env_file=tmp_path / "absent.env").token == "x"


def test_sharding_and_the_database_url() -> None:
    alone = parse()
    assert alone.sharding == Sharding() and alone.sharding.trainer and not alone.sharding.partial
    assert alone.database == "data/lyrics.db" and alone.database_url is None
    # Several processes: each runs some shards, and only the one that says so trains.
    url = "postgresql://bot:s3cret@db.internal:5432/lyrics"
    shard = parse(LYRICS_SHARD_COUNT="4", LYRICS_SHARD_IDS=" 2, 3,3", LYRICS_DATABASE_URL=url)
    assert shard.sharding == Sharding(count=4, ids=(2, 3), trainer=False)
    assert shard.sharding.partial and shard.database == url
    assert "s3cret" not in repr(shard)  # the URL's password never ends up in a log line
    trainer = parse(LYRICS_SHARD_COUNT="4", LYRICS_SHARD_IDS="0,1", LYRICS_TRAINER="1", LYRICS_MODEL_POLL="0.5")
    assert trainer.sharding == Sharding(count=4, ids=(0, 1), trainer=True, model_poll_s=0.5)
    # A fixed count, every shard in this one process: it is the only process, so it trains.
    assert parse(LYRICS_SHARD_COUNT="3").sharding == Sharding(count=3)
    assert parse(LYRICS_SHARD_COUNT="2", LYRICS_SHARD_IDS="0,1").sharding.trainer


def test_the_queue_share_the_attachment_hosts_and_the_lease() -> None:
    default = parse()
    assert default.limits.guild_share == 250  # half of the 500 places
    assert default.attachment_hosts == ("cdn.discordapp.com", "media.discordapp.net")
    assert default.sharding.trainer_lease_s == 45.0 and default.corpora_max_bytes == 64 << 20
    assert parse(LYRICS_MAX_QUEUE="1").limits.guild_share == 1
    assert parse(LYRICS_MAX_QUEUE="40", LYRICS_GUILD_QUEUE="10").limits.guild_share == 10
    assert parse(LYRICS_MAX_QUEUE="40", LYRICS_GUILD_QUEUE="99").limits.guild_share == 40
    tuned = parse(LYRICS_ATTACHMENT_HOSTS=" 127.0.0.1, CDN.example ", LYRICS_TRAINER_LEASE="3")
    assert tuned.attachment_hosts == ("127.0.0.1", "cdn.example") and tuned.sharding.trainer_lease_s == 3.0
