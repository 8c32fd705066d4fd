"""/corpus add | list | remove (owners): teach the bot new lyrics from chat.

    /corpus add file:<attachment>   a .txt, or a .zip of .txt, up to 2 MB: checked, stripped of lines the
                                    corpus already has, stored under LYRICS_CORPORA with who and when;
                                    the answer previews it (lines, characters, new words, sample lines)
    /corpus list                    the base corpus (LYRICS_CORPUS) and the added files, with sizes
    /corpus remove name:            one added file (names autocomplete)

The next `/train start` trains on the base corpus plus the added files; the held-out text stays the
base corpus' tail, so the new model's score and the live model's are on the same text.

    cog.py     the commands
    texts.py   what they say
The files themselves are bot/corpora.py's (no Discord there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.exts.corpus.cog import CorpusCog

if TYPE_CHECKING:
    from bot.client import LyricsBot


async def setup(bot: LyricsBot) -> None:
    await bot.add_cog(CorpusCog(bot))
