"""The golden songs (tests/model/golden.py): the sampler writes the recorded songs byte for byte."""

from __future__ import annotations

import json

from model.sample import Sampler
from tests.model.golden import RECORD, build_bundle, golden_requests, song_hashes


def test_the_sampler_writes_the_recorded_songs(tmp_path):
    # float32 only, unlike the sampler's other rounding-sensitive tests: bfloat16 products are not the same
    # bytes on every CPU (oneDNN's native AVX512-BF16/AMX kernels accumulate otherwise than its emulation: 1 of
    # the first 40 golden songs differs between the two on one machine), so no one record fits every machine.
    # float32 gives the same songs with AVX2 and AVX-512 kernels alike.
    sampler = Sampler.load(build_bundle(tmp_path / "golden.pt"), device="cpu", precision="float32")
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    assert len(recorded) == len(golden_requests())
    written = song_hashes(sampler)
    changed = [i for i, (a, b) in enumerate(zip(written, recorded, strict=True)) if a != b]
    assert not changed, (
        f"songs {changed} differ from the record; if the change is meant to move the songs, "
        "regenerate it with `python -m tests.model.golden` and say so in the commit"
    )
