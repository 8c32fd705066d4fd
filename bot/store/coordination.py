"""How the bot's processes on one database work together: which one trains, and the interactions the others hand it.

Not the bot's memory (that is `Store`, bot/store/base.py) but process coordination, which each database does
by its own means: on SQLite a lock file the kernel drops with its process and a polled table
(sqlite_coordination.py); on PostgreSQL a renewed lease and a table with NOTIFY (postgres_coordination.py).
A store gives out its database's `Coordinator` (`store.coordinator`); bot/relay.py and the client's start-up
use nothing else of it.

    coordinator = store.coordinator
    if await coordinator.claim_trainer():          # this process trains
        payloads = await coordinator.relay_take(max_age_s=2.5)
    else:                                          # another one does: hand it /train
        ticket = await coordinator.relay_post(sealed_payload)
        fate = await coordinator.relay_withdraw(ticket)

The guarantee both keep: exactly one of `relay_withdraw` and `relay_take` gets any one interaction, so it is
answered exactly once. (Its errors are the store's: `DatabaseError`, and `TrainerTakenError` for the client.)
"""

from __future__ import annotations

import abc
import asyncio
import enum

TRAINER_LEASE_S = 45.0  # PostgreSQL: how long a trainer's claim outlives its last renewal (Settings.sharding)


class RelayFate(enum.Enum):
    """What became of a handed-over interaction, as the process that left it learns when it takes it back."""

    WITHDRAWN = "withdrawn"  # still waiting: the trainer never saw it; the sender answers it itself
    TAKEN = "taken"  # the trainer took it and answers it
    EXPIRED = "expired"  # the trainer found it too old and dropped it unanswered: the sender must say so


class Coordinator(abc.ABC):
    """The trainer's claim and the interactions handed to it, on the database a store opened (closed with it).

    Failures of the database raise `DatabaseError`, as the store's own methods do.
    """

    # ---- the trainer process

    @abc.abstractmethod
    async def claim_trainer(self, *, lease_s: float = TRAINER_LEASE_S) -> bool:
        """Become the one process on this database that trains and promotes models; False if another process
        already is. The claim lasts until the store closes or the process dies (no stale claim survives it):
        on SQLite a lock the kernel drops with the process; on PostgreSQL a lease renewed every third of
        `lease_s`, which another process may take over `lease_s` after its last renewal."""

    async def wait_trainer_lost(self) -> str:
        """Return, saying why, if this process's trainer claim is lost (PostgreSQL: the lease could not be
        renewed in time, or its connection broke). A claim that cannot be lost never returns."""
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    # ---- interactions handed to the trainer process (bot/relay.py)

    @abc.abstractmethod
    async def relay_post(self, payload: str) -> int:
        """Leave an interaction (its gateway payload, as JSON) for the trainer process; returns its ticket."""

    @abc.abstractmethod
    async def relay_withdraw(self, ticket: int) -> RelayFate:
        """Take the interaction back: WITHDRAWN if it was still waiting, TAKEN if the trainer has it, EXPIRED if
        the trainer found it too old and dropped it (its sender, late, must answer it after all).

        Exactly one of `relay_withdraw` and `relay_take` gets any one interaction.
        """

    @abc.abstractmethod
    async def relay_take(self, *, max_age_s: float) -> list[str]:
        """Take every waiting interaction, oldest first. Those older than `max_age_s` are not returned but
        marked expired, for a late `relay_withdraw` to find; expired ones nobody withdrew go after a minute
        (their sender crashed)."""

    @abc.abstractmethod
    async def relay_wait(self, timeout: float) -> None:
        """Return when an interaction may have been left, or after `timeout` seconds."""
