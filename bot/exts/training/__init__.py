"""/train start | status | cancel (the bot's owners) and /model info (everyone): retrain the model from chat.

The flow of one run:
  1. `/train start` is @owner_only (checked on OUR side: Discord's default_permissions is only a hint;
     the model is shared by every server, so a server's Administrator is not enough: bot.permissions),
     refuses a second job, starts `python -m model train --progress jsonl` as a child process (bot.jobs)
     on LYRICS_CORPUS plus the files /corpus add stored (--added-corpora: training part only), writing a
     candidate bundle beside the live one, and replies at once with a progress message;
  2. as epochs end, that message is edited (at most every LYRICS_TRAIN_UPDATE_INTERVAL seconds) with a
     progress bar, the losses and an ETA; an interaction's token only lasts 15 minutes, so before then the
     progress moves to an ordinary channel message (or, where the bot may not post, the edits stop and say so);
  3. when the child ends, the message shows the outcome. A finished run goes to `bot.promotion.Promoter`, which
     loads the candidate once, compares held-out bpc on the same held-out text (re-scoring the live model
     first if it was scored on another base corpus), and makes it live when it is better (or force:true,
     or there is no live model): the file by os.replace (atomic: same folder, the old one kept as
     *.previous), the engine by one assignment (songs being written finish on the old model). A failed
     run shows the last lines of its stderr; the live model keeps serving whatever happens.

    cog.py       the commands and a run's life
    options.py   StartOptions: the one record of /train start's options
    progress.py  the progress message and what keeps it current
    texts.py     what it all says
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.exts.training.cog import Training

if TYPE_CHECKING:
    from bot.client import LyricsBot


async def setup(bot: LyricsBot) -> None:
    await bot.add_cog(Training(bot))
