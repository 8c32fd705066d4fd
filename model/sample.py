"""Writing songs from a bundle: planned line by line, many songs and candidates per forward pass.

A song is written in two levels. Its *plan* (model.plan) gives it sections (verse, chorus sung again) and
each line a length, whether it must rhyme, a keyword from the song's theme (model.theme), and for a chorus sung
again, the line it repeats. The song's rhyme group comes from the request (``rhyme``), or from its first line.
Each written line is then drawn ``candidates`` times at once: one row writes it until a few characters before
its planned end, then forks into the candidates, each drawn token by token from the bundle's mixture through
the shaping steps (model.shaping: the theme's pull, the plan's pull on the line break and the rhyme, no-copy,
the request's temperature, top-k and top-p), and the scorer (model.rerank) keeps the one that best fits the
plan. A repeated line is not drawn: its tokens are fed as they were sung.

All rows of all songs in one ``generate_many`` call share each forward pass; a song that finishes
leaves the batch. Every song draws from its own generators seeded by ``random_seed`` (one for the plan, one
for the tokens), so the same request gives the same song whatever else is in the batch (up to float
rounding, which the benchmark measures). The seed is fed once and the recurrent state carried: each token
costs one step, not a re-run over the whole song.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Bundle, load_bundle
from .network import State, pick_device
from .ngram import NgramModel
from .novelty import LINE_CHARS, NoveltyGuard
from .plan import CHORUS, SongPlan
from .rerank import LineScorer, ScoreWeights
from .rhyme import char_rhyme, is_han, line_rhyme
from .shaping import (
    REPETITION_WINDOW,
    BlockToken,
    Controls,
    DampedTemperature,
    Drawer,
    ForceBreak,
    LineBreakPull,
    NoCopy,
    RepetitionPenalty,
    RescueDeadRows,
    RhymePull,
    Shaper,
    ThemePull,
    TopK,
    Unstitch,
)
from .stepper import Stepper
from .theme import SongTheme, ThemeFinder, content_words
from .vocab import NEWLINE, Vocab

MAX_TEMPERATURE = 5.0
MAX_LENGTH = 2000
MAX_SEED_CHARS = 1000
MAX_REPETITION_PENALTY = 10.0
MAX_CANDIDATES = 64
COPY_COUNT_CHARS = LINE_CHARS  # lines at least this long count towards a song's copy rate
RHYME_AUTO, RHYME_OFF = "auto", "off"

LINE_SLACK = 3  # characters a line may run past its planned length before its break is forced
SHORT_SLACK = 3  # characters a line may fall short of its planned length and still end
MAX_LINE_TOKENS = 40
BRANCH_CHARS = 4  # a line is written once until this close to its planned end, then as its candidates
# How hard the line break is pulled towards the plan while a candidate is written (log-probability units).
LENGTH_PULL = 0.7  # per character of distance from the planned length
RHYME_PULL = 3.0  # for (or against) ending the line on this character
RELATED_WORDS = 10  # words the corpus sings around the seed's (model.theme), handed out as the lines' keywords
# How readily each word ends a line in the corpus (log of its rate against the average, clipped): a line that
# stops on 的, 是 or 不 reads as cut off. It weighs on the line break, and rhymes are pulled only onto words that
# end lines.
ENDING_WEIGHT = 1.0
MIN_ENDING = -1.0
FRAGMENT_CHARS = 5  # a span of a training line this long is a corpus fragment
STITCH_PENALTY = 1.5  # against the tokens that would complete one (log-probability units)


class SamplingError(ValueError):
    """A request's parameters are invalid; the message names the parameter and its allowed range."""


@dataclass
class SampleRequest:
    """One song to write. These defaults are exactly what /lyrics does.

    ``temperature=0`` is greedy (one candidate per line); ``top_k=0`` and ``top_p=1`` switch those filters
    off. ``length`` counts tokens: the song ends with the line on which it reaches that many, or, in a song
    with a chorus, once the chorus it is in (or must still come back to) is sung (model.plan).
    ``repetition_penalty`` acts on the last few lines' words, except the words the song is about (its theme:
    model.theme), which may come back line after line; a word twice in one line is penalised whatever it is.
    ``rhyme`` is "auto" (the first line sets it), "off", or a character whose rhyme group every rhymed
    line ends in. ``candidates`` is how many times each line is written before the best is kept.
    """

    seed: str = ""
    temperature: float = 0.8
    length: int = 150
    random_seed: int = 0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.2
    max_lines: int = 0
    no_copy: bool = True
    rhyme: str = RHYME_AUTO
    candidates: int = 4

    def validate(self) -> None:
        """Raise SamplingError on any parameter outside its range; nothing is clamped silently."""

        def bad(message: str) -> None:
            raise SamplingError(message)

        if not isinstance(self.seed, str):
            bad("seed must be text")
        if len(self.seed) > MAX_SEED_CHARS:
            bad(f"the seed has {len(self.seed)} characters; at most {MAX_SEED_CHARS} are allowed")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= MAX_TEMPERATURE:
            bad(f"temperature must be a number from 0 (greedy) to {MAX_TEMPERATURE:g}, not {self.temperature!r}")
        if not _is_int(self.length) or not 1 <= self.length <= MAX_LENGTH:
            bad(f"length must be a whole number of tokens from 1 to {MAX_LENGTH}, not {self.length!r}")
        if not _is_int(self.random_seed) or not 0 <= self.random_seed < 2**63:
            bad(f"random_seed must be a whole number from 0 to 2**63-1, not {self.random_seed!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            bad(f"top_k must be 0 (off) or a positive whole number, not {self.top_k!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], not {self.top_p!r}")
        if not _is_number(self.repetition_penalty) or not 1 <= self.repetition_penalty <= MAX_REPETITION_PENALTY:
            bad(
                f"repetition_penalty must be from 1 (off) to {MAX_REPETITION_PENALTY:g}, "
                f"not {self.repetition_penalty!r}"
            )
        if not _is_int(self.max_lines) or self.max_lines < 0:
            bad(f"max_lines must be 0 (no limit) or a positive whole number, not {self.max_lines!r}")
        if not isinstance(self.no_copy, bool):
            bad(f"no_copy must be true or false, not {self.no_copy!r}")
        if not _is_int(self.candidates) or not 1 <= self.candidates <= MAX_CANDIDATES:
            bad(f"candidates must be a whole number from 1 to {MAX_CANDIDATES}, not {self.candidates!r}")
        if not isinstance(self.rhyme, str) or (
            self.rhyme not in (RHYME_AUTO, RHYME_OFF) and char_rhyme(self.rhyme) is None
        ):
            bad(
                f"rhyme must be {RHYME_AUTO!r}, {RHYME_OFF!r} or one Chinese character whose rhyme to use, "
                f"not {self.rhyme!r}"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Sample:
    """A written song and what a caller should know about it."""

    text: str
    request: SampleRequest
    unknown: list[str] = field(default_factory=list)
    copied_lines: list[str] = field(default_factory=list)
    lines: int = 0
    tokens: int = 0
    rhyme: str | None = None  # the rhyme group most of its lines end in (model.rhyme.GROUPS)

    @property
    def copy_rate(self) -> float:
        """Share of the song's lines (4+ characters) found verbatim in the training corpus."""
        counted = [line for line in self.text.split(NEWLINE) if len(line) >= COPY_COUNT_CHARS]
        return len(self.copied_lines) / len(counted) if counted else 0.0


def clean(text: str) -> str:
    """Keep line breaks, drop other control characters, trim spaces at line ends."""
    text = "".join(ch for ch in text if ch == NEWLINE or not unicodedata.category(ch).startswith("C"))
    return NEWLINE.join(line.strip() for line in text.split(NEWLINE))


@dataclass(eq=False)  # rows are told apart by identity: two candidates may read the same
class _Row:
    """One candidate for the current line of a song: a row of the batch."""

    song: _Song
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # the line so far (for the first line, after the seed's part of it)
    done: bool = False
    sung: list[int] | None = None  # a repeated line's tokens and its line break, fed instead of drawn


@dataclass(eq=False)
class _Song:
    """The state of one request inside a batch."""

    index: int
    request: SampleRequest
    plan: SongPlan  # each line's length and whether it rhymes, drawn from its own generator
    rng: np.random.Generator  # the tokens' draws
    history: list[int]  # every token so far: a line break, the seed, the committed lines
    generated: list[int]  # the committed tokens after the seed
    unknown: list[str]
    cache: NgramModel | None
    prefix: str = ""  # the part of the current line already written (the seed's last line)
    rhyme: str | None = None  # the rhyme group rhymed lines end in; None: not chosen yet, or off
    done: bool = False
    rows: list[_Row] = field(default_factory=list)
    groups: Counter[str] = field(default_factory=Counter)
    memo: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)  # cache distributions this line
    lines: list[list[int]] = field(default_factory=list)  # each committed line's tokens
    chorus_tokens: int = 0  # tokens one singing of the chorus takes, once it is written
    theme: SongTheme | None = None  # set once the first line has said what the song is about
    earlier: list[int] = field(default_factory=list)  # the recent tokens of earlier lines the penalty counts

    @property
    def lines_done(self) -> int:
        return len(self.lines)

    @property
    def width(self) -> int:
        """Candidates per line: greedy decoding would write the same one K times."""
        return 1 if self.request.temperature == 0 else self.request.candidates

    @property
    def target(self) -> int:
        """Planned characters of the current line."""
        return self.plan.current.length

    @property
    def rhymed(self) -> bool:
        """Whether the current line must end in ``rhyme``."""
        return self.plan.current.rhymed and self.rhyme is not None


class Sampler:
    """Writes songs from a loaded bundle.

    Calls may overlap (the engine abandons a stuck batch to a thread of its own and goes on): everything a call
    writes to is its own, and what calls share (the network in eval mode, the memoised n-gram distributions and
    novelty lookups) is read-only or behind thread-safe caches.
    """

    def __init__(
        self, bundle: Bundle, device: torch.device, weights: ScoreWeights | None = None, precision: str = "auto"
    ):
        self.bundle = bundle
        self.device = device
        self.net = bundle.net.to(device).eval()
        self.step = Stepper(self.net, precision)  # what writing calls: the same network, laid out for one-token steps
        self.vocab = Vocab(bundle.vocab)
        self.newline_id = self.vocab.stoi.get(NEWLINE, self.vocab.unk_id)
        self.mixture = bundle.mixture
        self.weights = {k: w for k, w in self.mixture.sampling_weights.items() if w > 0}
        self.ngram = (
            self.mixture.static_model(bundle.train_ids, len(self.vocab)).freeze(memo=16384, dtype=np.float32)
            if "ngram" in self.weights
            else None
        )
        train_text = self.vocab.decode(bundle.train_ids)
        counts = np.bincount(np.asarray(bundle.train_ids, dtype=np.int64), minlength=len(self.vocab)) + 1.0
        self.log_unigram = torch.from_numpy(np.log(counts / counts.sum())).float()
        self.guard = NoveltyGuard(train_text, self.vocab)
        self.fragments = NoveltyGuard(train_text, self.vocab, line_chars=10**9, span_chars=FRAGMENT_CHARS)
        train_lines = [line for line in train_text.split(NEWLINE) if line]
        self.line_lengths = np.array([len(line) for line in train_lines] or [8])
        self.tokens_per_line = len(bundle.train_ids) / max(len(train_lines), 1)  # the line break included
        self.themes = ThemeFinder(bundle.train_ids, self.vocab)
        self.is_content = np.zeros(len(self.vocab), dtype=bool)
        self.is_content[self.themes.content] = True
        self.scorer = LineScorer(weights)
        # The last character of every token, as a rhyme group, for pulling line ends towards the plan.
        self.token_rhyme = [char_rhyme(t[-1]) if t and is_han(t[-1]) else None for t in self.vocab.itos]
        self.endings = line_endings(bundle.train_ids, self.newline_id, len(self.vocab), self.vocab.itos)
        self.tokens_by_rhyme: dict[str, torch.Tensor] = {}
        for token_id, group in enumerate(self.token_rhyme):
            # Only words that end lines in the corpus: a rhyme on 的 or 是 is a line cut off, not a rhyme.
            if group is not None and self.endings[token_id] >= MIN_ENDING:
                self.tokens_by_rhyme.setdefault(group, []).append(token_id)  # type: ignore[arg-type]
        self.tokens_by_rhyme = {g: torch.tensor(ids) for g, ids in self.tokens_by_rhyme.items()}
        # The order of the steps is part of what a song is: see model.shaping.
        self.shaper = Shaper(
            [
                BlockToken(self.vocab.unk_id),
                RepetitionPenalty(exempt=self.newline_id),
                ThemePull(),
                RhymePull(self.tokens_by_rhyme, RHYME_PULL / 2),
                LineBreakPull(self.newline_id),
                ForceBreak(self.newline_id),
                Unstitch(STITCH_PENALTY),
                NoCopy(),
                TopK(),
                RescueDeadRows(self.newline_id),
            ]
        )
        self.drawer = Drawer(DampedTemperature(self.log_unigram))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> Sampler:
        """Load a bundle (safely, weights only) onto a device: auto picks cuda, then mps, then cpu.

        `precision` is what the network's products run in while writing (model.stepper): auto is bfloat16
        on a CPU that has it natively, float32 elsewhere.
        """
        resolved = pick_device(device)
        return cls(load_bundle(path, resolved), resolved, precision=precision)

    @property
    def precision(self) -> str:
        """What the network multiplies in while writing: "bfloat16" or "float32"."""
        return str(self.step.dtype).removeprefix("torch.")

    @property
    def bundle_hash(self) -> str:
        return self.bundle.sha256

    @property
    def metrics(self) -> dict:
        return self.bundle.metrics

    def generate(self, request: SampleRequest) -> Sample:
        """Write one song."""
        return self.generate_many([request])[0]

    def generate_many(self, requests: list[SampleRequest]) -> list[Sample]:
        """Write several songs, all their candidates in one batched forward pass per step; results in order."""
        for request in requests:
            request.validate()
        if not requests:
            return []
        with torch.inference_mode():
            return self._generate(requests)

    # ---- the loop

    def _generate(self, requests: list[SampleRequest]) -> list[Sample]:
        songs = [self._start(i, r) for i, r in enumerate(requests)]
        logits, states = [], []
        for song in songs:
            # Each seed is primed on its own: seeds differ in length and priming is a small share of the work.
            step_logits, state = self.step(torch.tensor([song.history], device=self.device))
            logits.append(step_logits[:, -1])
            states.append(state)
            self._begin_line(song)
        rows = [song.rows[0] for song in songs]
        batch_logits = torch.cat(logits)
        batch_state = _cat_states(states)
        pending = [0] * len(rows)  # the token each row feeds the network next
        while rows:
            drawing = [i for i, row in enumerate(rows) if not row.done and row.sung is None]
            tokens = self._choose([rows[i] for i in drawing], batch_logits[drawing]) if drawing else []
            for i, token in zip(drawing, tokens, strict=True):
                self._append(rows[i], token)
                pending[i] = token
            for i, row in enumerate(rows):
                if not row.done and row.sung is not None:  # a repeated line: its tokens, not a draw
                    pending[i] = row.sung[len(row.tokens)]
                    self._append(row, pending[i])
            rows, sources, pending = self._next_rows(songs, rows, pending)
            if not rows:
                break
            # Every row continues the state of its source: itself, the trunk it forked from, or the candidate
            # its song kept. Finished songs drop out, so they cost nothing further.
            index = torch.tensor(sources, device=self.device)
            batch_state, batch_logits = _select_state(batch_state, index), batch_logits[index]
            stepping = torch.tensor([not row.done for row in rows], device=self.device)
            out, new_state = self.step(torch.tensor(pending, device=self.device).unsqueeze(1), batch_state)
            if bool(stepping.all()):
                batch_state, batch_logits = new_state, out[:, -1]
            else:
                # A candidate that has ended its line waits for its siblings: its state must not move.
                batch_state = _where_state(stepping, new_state, batch_state)
                batch_logits = torch.where(stepping.unsqueeze(1), out[:, -1], batch_logits)
        return [self._finish(song) for song in songs]

    def _next_rows(
        self, songs: list[_Song], rows: list[_Row], pending: list[int]
    ) -> tuple[list[_Row], list[int], list[int]]:
        """The rows of the next step, the row each continues, and the token each feeds.

        A song whose candidates have all ended keeps the best as its line and starts the next from it. A line
        is written once up to BRANCH_CHARS before its planned end, then forks into the request's candidates:
        they differ where it matters, in how the line ends, and the shared start costs one row, not K.
        """
        position = {id(row): i for i, row in enumerate(rows)}
        next_rows: list[_Row] = []
        sources: list[int] = []
        tokens: list[int] = []
        for song in songs:
            if song.done:
                continue
            if all(row.done for row in song.rows):
                chosen = self._commit(song)
                if song.done:
                    continue
                self._begin_line(song)
                next_rows.append(song.rows[0])
                sources.append(position[id(chosen)])
                tokens.append(self.newline_id)
                continue
            for row in song.rows:
                next_rows.append(row)
                sources.append(position[id(row)])
                tokens.append(pending[position[id(row)]])
            trunk = song.rows[0]
            if len(song.rows) < song.width and not trunk.done and trunk.sung is None and self._at_branch(song, trunk):
                for _ in range(song.width - 1):
                    clone = _Row(song, list(trunk.tokens), trunk.text)
                    song.rows.append(clone)
                    next_rows.append(clone)
                    sources.append(position[id(trunk)])
                    tokens.append(pending[position[id(trunk)]])
        return next_rows, sources, tokens

    @staticmethod
    def _at_branch(song: _Song, trunk: _Row) -> bool:
        """Whether the line's one row has come close enough to the planned end to fork into its candidates."""
        return len(song.prefix) + len(trunk.text) >= song.target - BRANCH_CHARS

    def _start(self, index: int, request: SampleRequest) -> _Song:
        encoded = self.vocab.encode(request.seed.strip())
        # Songs start at a line break, so the seed begins a line like the corpus' lines do.
        history = [self.newline_id, *encoded.ids]
        cache = self.mixture.new_cache(len(self.vocab)) if "cache" in self.weights else None
        if cache is not None:
            for i in range(len(history)):
                cache.add(history, i)
        prefix = self.vocab.decode(encoded.ids).split(NEWLINE)[-1]
        rhyme = None
        if request.rhyme not in (RHYME_AUTO, RHYME_OFF):
            rhyme = char_rhyme(request.rhyme)
        plan_rng, rng = _generators(request)
        plan = SongPlan.draw(plan_rng, self.line_lengths, request.length / self.tokens_per_line)
        return _Song(
            index,
            request,
            plan,
            rng,
            history,
            [],
            encoded.unknown,
            cache,
            prefix=prefix,
            rhyme=rhyme,
        )

    def _begin_line(self, song: _Song) -> None:
        """Plan the next line and give the song fresh candidate rows (or the row that sings a line again)."""
        request = song.request
        plan = song.plan.next_line(
            prefix=song.prefix,
            tokens=len(song.generated),
            length=request.length,
            chorus_tokens=song.chorus_tokens,
            estimate=self.tokens_per_line,
        )
        if request.rhyme == RHYME_AUTO and song.plan.new_rhyme():
            song.rhyme = None  # this line sets the rhyme
        song.memo.clear()
        trunk = _Row(song)  # it forks into the candidates near the line's end
        if plan.repeats is not None:
            trunk.sung = [*song.lines[plan.repeats], self.newline_id]
        song.rows = [trunk]
        recent = song.generated[-REPETITION_WINDOW:]
        if song.theme is not None:
            song.theme.begin_line(song.lines, plan.keyword)
            # A theme, not a blanket penalty: the words the song is about may come back line after line.
            recent = [t for t in recent if song.theme.line[t] <= 0]
        song.earlier = recent

    def _set_theme(self, song: _Song, first_line: str) -> None:
        """What the song is about, once its first line is written: the seed's content words (or, for a seed
        without any, the first line's) and the words the corpus sings around them; the plan hands them out as
        the lines' keywords, the seed's own first in the chorus."""
        seed_words = content_words(song.request.seed) or content_words(first_line)
        related = [self.vocab.itos[r.token] for r in self.themes.related(seed_words, RELATED_WORDS)]
        keywords = [str(word) for word in song.plan.rng.permutation(related)] if related else []
        song.plan.set_theme(keywords, [*seed_words[:1], *keywords[::-1]])
        song.theme = SongTheme(self.vocab, self.is_content, seed_words, related)

    # ---- one step

    def _log_probs(self, rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        """log p(next token) under the bundle's sampling mixture, float32 (rows, vocab)."""
        log_net = torch.log_softmax(logits.float(), dim=-1).cpu()
        if self.weights.keys() == {"net"}:
            return log_net
        counts = np.zeros((len(rows), len(self.vocab)), dtype=np.float32)
        ngram_w, cache_w = self.weights.get("ngram", 0.0), self.weights.get("cache", 0.0)
        for r, row in enumerate(rows):
            song = row.song
            context = (song.history + row.tokens)[-3:]
            if self.ngram is not None:
                np.multiply(self.ngram.distribution(context), ngram_w, out=counts[r])
            if song.cache is not None:
                key = tuple(context)
                cached = song.memo.get(key)
                if cached is None:
                    cached = song.memo[key] = (cache_w * song.cache.distribution(context)).astype(np.float32)
                counts[r] += cached
        probs = log_net.exp_().mul_(self.weights.get("net", 0.0)).add_(torch.from_numpy(counts))
        return probs.log_()

    def _choose(self, rows: list[_Row], logits: torch.Tensor) -> list[int]:
        """Every row's next token: the mixture, shaped by the steps (model.shaping), then drawn."""
        logp = self._log_probs(rows, logits)
        controls = self._controls(rows, logp.size(1))
        self.shaper(logp, controls)
        uniforms = [0.0 if row.song.request.temperature == 0 else row.song.rng.random() for row in rows]
        return self.drawer(logp, controls, uniforms)

    def _controls(self, rows: list[_Row], vocab_size: int) -> Controls:
        """Each row's parameters for the shaping steps, from its request, its song's plan and its line so far.

        The one walk over the rows in Python; the steps then act on the whole batch at once.
        """
        controls = Controls(len(rows), vocab_size)
        for r, row in enumerate(rows):
            song, request = row.song, row.song.request
            line = song.prefix + row.text
            controls.temperature[r] = request.temperature
            controls.top_k[r] = request.top_k
            controls.top_p[r] = request.top_p
            if request.repetition_penalty > 1:
                window = (song.earlier + row.tokens)[-REPETITION_WINDOW:]
                controls.recent[r, REPETITION_WINDOW - len(window) :] = window
                controls.penalty[r] = math.log(request.repetition_penalty)
            if song.theme is not None:
                song.theme.row(controls.pull_rows(vocab_size)[r], row.tokens, line)
            controls.line_break[r] = self._line_end_pull(song, row, line, controls.rhyming, r)
            if (
                len(row.tokens) >= MAX_LINE_TOKENS
                or len(line) >= song.target + LINE_SLACK
                # A sibling has ended its line as the plan asks and this one is long enough: waiting on it would
                # cost steps for a candidate that can only score worse on length.
                or (len(line) >= song.target and self._line_settled(song))
            ):
                controls.forced.append(r)
            if request.no_copy:
                controls.block(r, self.guard.forbidden(line))
                stitches = self.fragments.forbidden(line)
                controls.stitched[0].extend([r] * len(stitches))
                controls.stitched[1].extend(stitches)
        return controls

    def _line_settled(self, song: _Song) -> bool:
        """Whether a candidate has already ended the current line well: in the rhyme, if the line needs one."""
        for row in song.rows:
            if row.done and (not song.rhymed or line_rhyme(song.prefix + row.text) == song.rhyme):
                return True
        return False

    def _line_end_pull(self, song: _Song, row: _Row, line: str, rhyming: dict[str, list[int]], r: int) -> float:
        """How much to add to the line break's log-probability: towards the planned length and, on a rhymed
        line, towards a rhyming last character. Near the planned end, row r is listed in ``rhyming`` so that
        tokens ending in the rhyme are favoured."""
        if not line:
            return -math.inf  # no empty lines: the corpus has none
        distance = len(line) - song.target
        if distance < -SHORT_SLACK:
            return -math.inf
        pull = LENGTH_PULL * max(-8, min(8, distance))
        if song.rhymed:
            # The last token's own reading: pypinyin on the whole line at every step would cost more than the step.
            last = self.token_rhyme[row.tokens[-1]] if row.tokens else char_rhyme(line[-1])
            pull += RHYME_PULL if last == song.rhyme else -RHYME_PULL
        if row.tokens:
            pull += ENDING_WEIGHT * self.endings[row.tokens[-1]]
        if song.rhymed and distance >= -4 and song.rhyme in self.tokens_by_rhyme:
            rhyming.setdefault(song.rhyme, []).append(r)  # near the end: favour the tokens that rhyme
        return pull

    def _append(self, row: _Row, token: int) -> None:
        if token == self.newline_id:
            row.done = True
            return
        row.tokens.append(token)
        row.text += self.vocab.itos[token]

    def _commit(self, song: _Song) -> _Row:
        """Keep the best candidate as the song's next line; returns its row."""
        rows = song.rows
        if len(rows) == 1:
            best = rows[0]
        else:
            candidates = [song.prefix + r.text for r in rows]
            rhyme = song.rhyme if song.rhymed else None
            endings = [float(self.endings[r.tokens[-1]]) if r.tokens else 0.0 for r in rows]
            best = rows[self.scorer.best(candidates, song.target, rhyme, song.plan.current.keyword, endings)]
        line = song.prefix + best.text
        tokens = [*best.tokens, self.newline_id]
        for token in tokens:
            song.history.append(token)
            song.generated.append(token)
            if song.cache is not None:
                song.cache.add(song.history, len(song.history) - 1)
        group = line_rhyme(line)
        if group is not None:
            song.groups[group] += 1
        if song.rhyme is None and song.request.rhyme == RHYME_AUTO:
            song.rhyme = group
        song.prefix = ""
        song.lines.append(best.tokens)
        plan, section = song.plan, song.plan.section
        if section.kind == CHORUS and section.occurrence == 0 and section.lines == section.nominal:
            song.chorus_tokens = sum(len(t) + 1 for t in song.lines[section.start :])
        if song.lines_done == 1:
            self._set_theme(song, line)
        request = song.request
        if plan.ends_song(len(song.generated), request.length) or (
            request.max_lines and song.lines_done >= request.max_lines
        ):
            song.done = True
        return best

    def _finish(self, song: _Song) -> Sample:
        # The seed is shown as typed, unknown characters included; only the continuation is decoded.
        text = clean(song.request.seed.strip() + self.vocab.decode(song.generated)).strip(NEWLINE)
        seed_lines = song.request.seed.strip().count(NEWLINE)
        text = _with_sections(text, [seed_lines + s.start for s in song.plan.sections[1:]])
        rhyme = (
            None
            if song.request.rhyme == RHYME_OFF
            else (song.groups.most_common(1)[0][0] if song.groups else song.rhyme)
        )
        return Sample(
            text=text,
            request=song.request,
            unknown=song.unknown,
            copied_lines=self.guard.copied(text),
            lines=sum(1 for line in text.split(NEWLINE) if line),
            tokens=len(song.generated),
            rhyme=rhyme,
        )


def line_endings(
    train_ids: list[int], newline: int, vocab_size: int, itos: list[str] | None = None, prior_weight: float = 5.0
) -> np.ndarray:
    """For each token, log(how often it ends a line / how often tokens do), smoothed towards the average by
    ``prior_weight`` sightings and clipped to [-3, 0]: 的 about -2.4, 不 -3, 离开 (1.2) 0. Only words that rarely
    end lines are marked: rewarding the common line enders would end lines before their planned length.

    With ``itos``, a one-character token is judged as a character too, by how often a line ends on that character
    among all its uses, inside words included: 背 is seldom a token of its own, so its token rate says little, but
    it mostly sits inside 背影 or 背后, and a line that stops on it reads as cut off mid-word (吹动背)."""
    ids = np.asarray(train_ids, dtype=np.int64)
    seen = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    ending = np.bincount(ids[:-1][ids[1:] == newline], minlength=vocab_size).astype(np.float64)
    prior = ending.sum() / max(seen.sum(), 1.0)
    if prior == 0:
        return np.zeros(vocab_size, dtype=np.float32)
    score = _ending_score(ending, seen, prior, prior_weight)
    if itos is not None:
        score = np.minimum(score, _char_ending_score(ids, newline, itos, prior_weight))
    return score.astype(np.float32)


def _ending_score(ending: np.ndarray, seen: np.ndarray, prior: float, prior_weight: float) -> np.ndarray:
    rate = (ending + prior_weight * prior) / (seen + prior_weight)
    return np.clip(np.log(rate / prior), -3.0, 0.0)


def _char_ending_score(ids: np.ndarray, newline: int, itos: list[str], prior_weight: float) -> np.ndarray:
    """The ending score of each one-character token's character, counted over the training text's characters."""
    uses: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for line in "".join(NEWLINE if i == newline else itos[i] for i in ids.tolist()).split(NEWLINE):
        uses.update(line)
        if line:
            ends[line[-1]] += 1
    prior = sum(ends.values()) / max(sum(uses.values()), 1)
    score = np.zeros(len(itos), dtype=np.float64)
    if prior == 0:
        return score
    for token, word in enumerate(itos):
        if len(word) == 1 and word in uses:
            score[token] = _ending_score(np.array(ends[word], float), np.array(uses[word], float), prior, prior_weight)
    return score


def _with_sections(text: str, starts: list[int]) -> str:
    """The song with a blank line before each of the lines ``starts`` (sections), as lyric sheets show them."""
    lines = text.split(NEWLINE)
    for start in sorted(starts, reverse=True):
        if 0 < start < len(lines):
            lines.insert(start, "")
    return NEWLINE.join(lines)


def _generators(request: SampleRequest) -> tuple[np.random.Generator, np.random.Generator]:
    """The song's plan and draw generators, both from its random seed and apart, so the plan does not depend on
    how many draws the writing took. Greedy writing draws nothing but the plan: every random seed gets the plan
    of seed 0, so greedy gives one song."""
    seed = 0 if request.temperature == 0 else request.random_seed
    plan, draws = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(plan), np.random.default_rng(draws)


def _map_state(state: State, fn) -> State:
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def _cat_states(states: list[State]) -> State:
    """Join per-song states (layers, rows, hidden) along the batch dimension."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat([s[i] for s in states], dim=1) for i in range(2))
    return torch.cat(states, dim=1)


def _select_state(state: State, rows: torch.Tensor) -> State:
    return _map_state(state, lambda s: s.index_select(1, rows))


def _where_state(mask: torch.Tensor, new: State, old: State) -> State:
    keep = mask.view(1, -1, 1)
    if isinstance(new, tuple):
        return tuple(torch.where(keep, n, o) for n, o in zip(new, old, strict=False))
    return torch.where(keep, new, old)
