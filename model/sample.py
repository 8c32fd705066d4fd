"""Fast, controllable, reproducible sampling from a bundle: many songs per forward pass.

The seed is fed once and the recurrent state carried, so each new token costs one step, not a
re-run over the whole song. Requests in one ``generate_many`` call share each forward pass; a song
that finishes leaves the batch. Every request draws from its own generator seeded by
``random_seed``, so the same request gives the same song whatever else is in the batch (up to
float rounding, which the benchmark measures).
"""

from __future__ import annotations

import contextlib
import math
import warnings
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Bundle, load_bundle
from .mixture import Mixture
from .network import State, pick_device
from .ngram import NgramModel
from .vocab import NEWLINE, Vocab

MAX_TEMPERATURE = 5.0
MAX_LENGTH = 2000
MAX_SEED_CHARS = 1000
MAX_REPETITION_PENALTY = 10.0
REPETITION_WINDOW = 32  # tokens, about three lines: the span over which repeats are penalised
COPY_BLOCK_CHARS = 6  # no_copy forbids training lines at least this long
COPY_COUNT_CHARS = 4  # lines at least this long count towards a song's copy rate


class SamplingError(ValueError):
    """A request's parameters are invalid; the message names the parameter and its allowed range."""


@dataclass
class SampleRequest:
    """One song to write. ``temperature=0`` is greedy; ``top_k=0`` and ``top_p=1`` switch those filters off."""

    seed: str = ""
    temperature: float = 0.8
    length: int = 150
    random_seed: int = 0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_lines: int = 0
    no_copy: bool = False

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
            bad(f"repetition_penalty must be from 1 (off) to {MAX_REPETITION_PENALTY:g}, not {self.repetition_penalty!r}")
        if not _is_int(self.max_lines) or self.max_lines < 0:
            bad(f"max_lines must be 0 (no limit) or a positive whole number, not {self.max_lines!r}")


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

    @property
    def copy_rate(self) -> float:
        """Share of the song's lines (4+ characters) found verbatim in the training corpus."""
        counted = [line for line in self.text.split(NEWLINE) if len(line) >= COPY_COUNT_CHARS]
        return len(self.copied_lines) / len(counted) if counted else 0.0


def clean(text: str) -> str:
    """Keep line breaks, drop other control characters, trim spaces at line ends."""
    text = "".join(ch for ch in text if ch == NEWLINE or not unicodedata.category(ch).startswith("C"))
    return NEWLINE.join(line.strip() for line in text.split(NEWLINE))


class CopyGuard:
    """Knows the training lines, to count copies and to stop a song from reproducing one."""

    def __init__(self, train_text: str, vocab: Vocab):
        self.lines = {line for line in train_text.split(NEWLINE) if len(line) >= COPY_COUNT_CHARS}
        blocked = [line for line in self.lines if len(line) >= COPY_BLOCK_CHARS]
        self.blocked = set(blocked)
        # prefix -> tokens that would finish a blocked line; checked on every step of a no_copy song.
        self.completions: dict[str, list[int]] = {}
        for line in blocked:
            for cut in range(len(line) - 1, 0, -1):
                token = vocab.stoi.get(line[cut:])
                if token is not None:
                    self.completions.setdefault(line[:cut], []).append(token)

    def copied(self, text: str) -> list[str]:
        return [line for line in text.split(NEWLINE) if line in self.lines]

    def forbidden(self, current_line: str, newline_id: int) -> list[int]:
        """Tokens that would complete a training line from ``current_line``, incl. the closing line break."""
        tokens = list(self.completions.get(current_line, ()))
        if current_line in self.blocked:
            tokens.append(newline_id)
        return tokens


@dataclass
class _Song:
    """The state of one request inside a batch."""

    index: int
    request: SampleRequest
    rng: np.random.Generator
    history: list[int]
    generated: list[int]
    unknown: list[str]
    cache: NgramModel | None
    line: str = ""
    lines_done: int = 0
    done: bool = False


class Sampler:
    """Writes songs from a loaded bundle. Not thread-safe: use one sampler per thread."""

    def __init__(self, bundle: Bundle, device: torch.device):
        self.bundle = bundle
        self.device = device
        self.net = bundle.net.to(device).eval()
        self.vocab = Vocab(bundle.vocab)
        self.newline_id = self.vocab.stoi.get(NEWLINE, self.vocab.unk_id)
        self.mixture = bundle.mixture
        self.weights = {k: w for k, w in self.mixture.weights.items() if w > 0}
        self.ngram = (self.mixture.static_model(bundle.train_ids, len(self.vocab)).freeze()
                      if "ngram" in self.weights else None)
        self.guard = CopyGuard(self.vocab.decode(bundle.train_ids), self.vocab)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Sampler":
        """Load a bundle (safely, weights only) onto a device: auto picks cuda, then mps, then cpu."""
        resolved = pick_device(device)
        return cls(load_bundle(path, resolved), resolved)

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
        """Write several songs, one batched forward pass per step; results come back in order."""
        for request in requests:
            request.validate()
        if not requests:
            return []
        with torch.inference_mode(), _native_cpu_kernels():
            return self._generate(requests)

    def _generate(self, requests: list[SampleRequest]) -> list[Sample]:
        songs = [self._start(i, r) for i, r in enumerate(requests)]
        logits, states = [], []
        for song in songs:
            # Each seed is primed on its own: seeds differ in length and priming is a small share of the work.
            step_logits, state = self.net(torch.tensor([song.history], device=self.device))
            logits.append(step_logits[:, -1])
            states.append(state)
        active = list(songs)
        batch_logits = torch.cat(logits)
        batch_state = _cat_states(states)
        while active:
            tokens = self._choose(active, batch_logits)
            still = []
            for row, (song, token) in enumerate(zip(active, tokens)):
                self._append(song, token)
                if not song.done:
                    still.append(row)
            if not still:
                break
            if len(still) < len(active):
                # Finished songs leave the batch so they cost nothing further.
                keep = torch.tensor(still, device=self.device)
                batch_state = _select_state(batch_state, keep)
                active = [active[r] for r in still]
                tokens = [tokens[r] for r in still]
            step = torch.tensor(tokens, device=self.device).unsqueeze(1)
            out, batch_state = self.net(step, batch_state)
            batch_logits = out[:, -1]
        return [self._finish(song) for song in songs]

    def _start(self, index: int, request: SampleRequest) -> _Song:
        encoded = self.vocab.encode(request.seed.strip())
        # Songs start at a line break, so the seed begins a line like the corpus' lines do.
        history = [self.newline_id] + encoded.ids
        cache = self.mixture.new_cache(len(self.vocab)) if "cache" in self.weights else None
        if cache is not None:
            for i in range(len(history)):
                cache.add(history, i)
        line = self.vocab.decode(encoded.ids).split(NEWLINE)[-1]
        return _Song(index, request, np.random.default_rng(request.random_seed), history, [], encoded.unknown,
                     cache, line=line)

    def _log_probs(self, active: list[_Song], logits: torch.Tensor) -> torch.Tensor:
        """log p(next token) under the bundle's mixture, float64 (batch, vocab)."""
        log_net = torch.log_softmax(logits.double(), dim=-1).cpu()
        if self.weights.keys() == {"net"}:
            return log_net
        probs = (log_net.exp() * self.weights.get("net", 0.0)).numpy()
        for row, song in enumerate(active):
            if self.ngram is not None:
                probs[row] += self.weights["ngram"] * self.ngram.distribution(song.history)
            if song.cache is not None:
                probs[row] += self.weights["cache"] * song.cache.distribution(song.history)
        return torch.from_numpy(np.log(probs))

    def _choose(self, active: list[_Song], logits: torch.Tensor) -> list[int]:
        """Apply each request's controls to its row, then draw every row's next token at once."""
        logp = self._log_probs(active, logits)
        logp[:, self.vocab.unk_id] = -math.inf
        for row, song in enumerate(active):
            self._apply_penalties(logp[row], song)
        temperature = torch.tensor([s.request.temperature for s in active], dtype=logp.dtype)
        greedy = temperature == 0
        scaled = logp / temperature.clamp_min(1e-3).unsqueeze(1)
        for row, song in enumerate(active):
            if song.request.top_k and song.request.top_k < scaled.size(1):
                kth = torch.topk(scaled[row], song.request.top_k).values[-1]
                scaled[row].masked_fill_(scaled[row] < kth, -math.inf)
        if bool(greedy.all()):
            chosen = scaled.argmax(1)
        else:
            probs = torch.softmax(scaled, dim=1)
            for row, song in enumerate(active):
                if song.request.top_p < 1:
                    sorted_probs, order = torch.sort(probs[row], descending=True)
                    # Keep the smallest set of most likely tokens whose mass reaches top_p.
                    outside = (sorted_probs.cumsum(0) - sorted_probs) >= song.request.top_p
                    probs[row, order[outside]] = 0
            cdf = probs.cumsum(1)
            # Inverse-CDF draws, each from its request's own generator: independent of the rest of the batch.
            u = torch.tensor([0.0 if g else s.rng.random() for s, g in zip(active, greedy.tolist())],
                             dtype=cdf.dtype)
            chosen = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1).clamp_max(cdf.size(1) - 1)
            if bool(greedy.any()):
                chosen = torch.where(greedy, scaled.argmax(1), chosen)
        if any(s.request.no_copy for s in active):
            # A row whose every token is blocked (possible only with no_copy) ends its line instead.
            chosen = torch.where(torch.isfinite(scaled).any(1), chosen, self.newline_id)
        return chosen.tolist()

    def _apply_penalties(self, logp: torch.Tensor, song: _Song) -> None:
        """Repetition penalty, no empty lines and the no-copy block, on one row of log-probabilities (in place)."""
        request = song.request
        if request.repetition_penalty > 1 and song.generated:
            # CTRL's penalty on probabilities, once per recent use: a word used twice in the last few
            # lines is divided by penalty². Line breaks are exempt, or lines would run on.
            recent = Counter(song.generated[-REPETITION_WINDOW:])
            recent.pop(self.newline_id, None)
            if recent:
                ids = torch.tensor(list(recent.keys()), dtype=torch.long)
                uses = torch.tensor(list(recent.values()), dtype=logp.dtype)
                logp[ids] -= uses * math.log(request.repetition_penalty)
        if not song.line and song.history[-1] == self.newline_id:
            logp[self.newline_id] = -math.inf  # no empty lines: the corpus has none
        if request.no_copy:
            blocked = self.guard.forbidden(song.line, self.newline_id)
            if blocked:
                logp[blocked] = -math.inf

    def _append(self, song: _Song, token: int) -> None:
        song.generated.append(token)
        song.history.append(token)
        if song.cache is not None:
            song.cache.add(song.history, len(song.history) - 1)
        request = song.request
        if token == self.newline_id:
            song.line = ""
            song.lines_done += 1
            if request.max_lines and song.lines_done >= request.max_lines:
                song.done = True
        else:
            song.line += self.vocab.itos[token]
        if len(song.generated) >= request.length:
            song.done = True

    def _finish(self, song: _Song) -> Sample:
        ids = song.generated
        if song.request.no_copy and song.line in self.guard.blocked:
            ids = ids[:-1]  # the song ended on a copied line with no room to diverge: drop its last word
        # The seed is shown as typed, unknown characters included; only the continuation is decoded.
        text = clean(song.request.seed.strip() + self.vocab.decode(ids)).strip(NEWLINE)
        return Sample(text=text, request=song.request, unknown=song.unknown,
                      copied_lines=self.guard.copied(text), lines=text.count(NEWLINE) + 1 if text else 0,
                      tokens=len(song.generated))


@contextlib.contextmanager
def _native_cpu_kernels() -> Iterator[None]:
    """Use PyTorch's own RNN kernels rather than oneDNN's while sampling.

    oneDNN sets up its LSTM primitive on every call, which costs more than the step itself when a step
    is one token: 2.3 ms against 0.9 ms for a 512-unit LSTM at batch 1 on this 2-core CPU
    (bench/bench_sample.py). Both give the same results for any batch size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flag setter warns about TF32 on Intel GPUs, which we never use
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _cat_states(states: list[State]) -> State:
    """Join per-song states (layers, 1, hidden) along the batch dimension."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat([s[i] for s in states], dim=1) for i in range(2))
    return torch.cat(states, dim=1)


def _select_state(state: State, rows: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows) for s in state)
    return state.index_select(1, rows)
