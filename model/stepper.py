"""The trained network laid out for writing: one token step for many rows, as fast as this machine allows.

Sampling spends about half its time in the network (bench/bench_sample.py), one token per row per step. Two
things make that step cheaper than `LyricsNet.forward`, without changing what the network computes:

  * the first layer's input gates depend only on the token, so `embedding @ W_ih + b_ih` is computed once for
    the whole vocabulary when the sampler loads (up to MAX_TABLE_ENTRIES); a step then looks its rows up
    instead of multiplying them. A character-aware network's word vectors (and its tied output vectors) are
    composed from their characters once, here, so writing never runs the composition;
  * on a CPU that multiplies bfloat16 natively (AVX512-BF16 or AMX), the remaining products (the recurrent
    weights and the output layer) run in bfloat16 through oneDNN, about 2.3x faster than float32 here at 50-200
    rows. The state, the gates' nonlinearities and the logits stay float32; only the products' inputs are
    rounded (to 8 significant bits): the default bundle's held-out network bpc moves by 0.0001 and its songs'
    figures by no more than seed noise (docs/figures.md). Elsewhere (other CPUs, CUDA, MPS) everything stays
    float32.

The cells are written out here (PyTorch's gate order and formulas for nn.LSTM, nn.GRU and tanh nn.RNN) because
torch's fused kernels take one dtype for weights and state alike; tests check them against the torch modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from model.network import LyricsNet, State

PRECISIONS = ("auto", "float32", "bfloat16")
MAX_TABLE_ENTRIES = 2**25  # 128 MB of float32 input gates: a 16,000-word vocabulary at 512 LSTM units


class PrecisionError(ValueError):
    """An unknown precision was asked for."""


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux: /proc/cpuinfo's flags); False where unknown."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the step's products run in: "auto" is bfloat16 on a CPU with native bfloat16, else float32.

    Fixed per machine (not measured at load), so one machine always writes the same song for the same request.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


class Stepper:
    """`LyricsNet`'s forward pass for inference: same inputs and state layout, logits always float32."""

    def __init__(self, net: LyricsNet, precision: str = "auto"):
        first = next(net.parameters())
        self.device = first.device
        self.dtype = resolve_precision(precision, self.device)
        self.cell = net.config.cell
        self.layers = net.config.layers
        rnn = net.rnn
        was_training = net.training
        net.eval()  # the vectors words are read and scored with, composed once here (no dropout)
        with torch.no_grad():
            self.embedding = net.word_vectors().detach().float().contiguous()
            out_weight, out_bias = net.output_layer(self.embedding)
            self.w_ih = [self._cast(getattr(rnn, f"weight_ih_l{k}")) for k in range(self.layers)]
            self.b_ih = [getattr(rnn, f"bias_ih_l{k}").float() for k in range(self.layers)]
            # (vocab, gates): the first layer's input product for every token, biases included (float32), unless
            # the vocabulary is so large that the table would cost more memory than it saves time.
            self.input_gates = None
            if self.embedding.size(0) * self.w_ih[0].size(0) <= MAX_TABLE_ENTRIES:
                self.input_gates = (self.embedding @ rnn.weight_ih_l0.float().T + self.b_ih[0]).contiguous()
            self.w_hh = [self._cast(getattr(rnn, f"weight_hh_l{k}")) for k in range(self.layers)]
            self.b_hh = [getattr(rnn, f"bias_hh_l{k}").float() for k in range(self.layers)]
            self.project = None
            if net.project is not None:
                self.project = (self._cast(net.project.weight), net.project.bias.float())
            self.decoder = (self._cast(out_weight), out_bias.float())
        net.train(was_training)
        self._cells: dict[str, Callable[..., State]] = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}

    def _cast(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().to(self.dtype).contiguous()

    def _linear(self, x: torch.Tensor, weight_bias: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        weight, bias = weight_bias
        out = nn.functional.linear(x.to(self.dtype), weight).float()
        return out if bias is None else out + bias

    def __call__(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (batch, time, vocab) and the state after the last token, as `LyricsNet.forward` gives them."""
        with torch.inference_mode():
            batch, steps = ids.shape
            if state is None:
                state = self._zero_state(batch)
            outputs = []
            for t in range(steps):
                x, state = self._step(ids[:, t], state)
                outputs.append(x)
            out = torch.stack(outputs, dim=1)
            if self.project is not None:
                out = self._linear(out, self.project)
            return self._linear(out, self.decoder), state

    def _zero_state(self, batch: int) -> State:
        zeros = torch.zeros(self.layers, batch, self.w_hh[0].size(1), device=self.device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def _step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token for every row through all layers; returns the top layer's output and the new state."""
        hs, cs = state if self.cell == "lstm" else (state, None)
        new_h, new_c = [], []
        x = None
        for k in range(self.layers):
            if k == 0 and self.input_gates is not None:
                gates_x = self.input_gates[ids]
            else:
                inputs = self.embedding[ids] if k == 0 else x
                gates_x = self._linear(inputs, (self.w_ih[k], self.b_ih[k]))
            gates_h = self._linear(hs[k], (self.w_hh[k], self.b_hh[k]))
            h, c = self._cells[self.cell](gates_x, gates_h, hs[k], None if cs is None else cs[k])
            new_h.append(h)
            new_c.append(c)
            x = h
        h_all = torch.stack(new_h)
        return x, ((h_all, torch.stack(new_c)) if self.cell == "lstm" else h_all)

    @staticmethod
    def _lstm(
        gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = (gx + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    @staticmethod
    def _gru(gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: None) -> tuple[torch.Tensor, None]:
        xr, xz, xn = gx.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None

    @staticmethod
    def _rnn(gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: None) -> tuple[torch.Tensor, None]:
        return torch.tanh(gx + gh), None
