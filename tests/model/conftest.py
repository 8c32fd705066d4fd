"""Fixtures of the model tests: the precisions the sampler writes in."""

from __future__ import annotations

import pytest

# The stepper's products run in bfloat16 on a CPU that has it natively and in float32 elsewhere ("auto"), so a
# test left on "auto" checks only one of them on any one machine, and a difference that only one precision
# shows fails on someone else's. Tests that take this fixture run in both, everywhere: bfloat16 works on every
# CPU (emulated, slower, where it is not native). Only tests whose outcome can depend on the network's rounding
# take it (songs reproduced, batches matching batch one, draws near a boundary), to keep the suite quick.
PRECISIONS = ("float32", "bfloat16")


@pytest.fixture(scope="module", params=PRECISIONS)
def precision(request: pytest.FixtureRequest) -> str:
    """Each precision in turn: module-scoped, so a module's samplers load once per precision."""
    return request.param
