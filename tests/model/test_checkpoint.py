import os
import pickle
import time

import pytest
import torch

from model.checkpoint import BUNDLE_FORMAT, BundleError, atomic_save, load_bundle
from model.sample import Sampler


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/lyrics-pwned",))


def test_a_good_bundle_loads(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.net.config.vocab_size == len(bundle.vocab)


def test_truncated_bundle_is_refused(tiny_bundle, tmp_path):
    cut = tmp_path / "cut.pt"
    data = tiny_bundle.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated or corrupt"):
        load_bundle(cut)


def test_random_bytes_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(BundleError):
        load_bundle(junk)


def test_bundle_carrying_a_pickled_object_is_refused(tiny_bundle, tmp_path):
    obj = torch.load(tiny_bundle, weights_only=True)
    obj["metrics"] = {"bpc": Payload()}
    hostile = tmp_path / "hostile.pt"
    torch.save(obj, hostile)
    if os.path.exists("/tmp/lyrics-pwned"):
        os.remove("/tmp/lyrics-pwned")
    with pytest.raises(BundleError, match="not plain data"):
        load_bundle(hostile)
    with pytest.raises(BundleError):
        Sampler.load(hostile, device="cpu")
    assert not os.path.exists("/tmp/lyrics-pwned")


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(BundleError):
        load_bundle(path)
    assert not os.path.exists("/tmp/lyrics-pwned")


def test_foreign_file_and_unknown_version_are_refused(tiny_bundle, tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(BundleError, match="not a lyrics-bundle"):
        load_bundle(foreign)
    obj = torch.load(tiny_bundle, weights_only=True)
    obj["version"] = 99
    future = tmp_path / "future.pt"
    torch.save(obj, future)
    with pytest.raises(BundleError, match="version 99"):
        load_bundle(future)


def test_inconsistent_bundle_is_refused_not_half_loaded(tiny_bundle, tmp_path):
    obj = torch.load(tiny_bundle, weights_only=True)
    obj["vocab"] = obj["vocab"][:-1]
    broken = tmp_path / "broken.pt"
    torch.save(obj, broken)
    with pytest.raises(BundleError, match="vocabulary does not match"):
        load_bundle(broken)


def test_missing_bundle_is_named(tmp_path):
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "nope.pt")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "b.pt"
    atomic_save({"format": BUNDLE_FORMAT, "n": 1}, path)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):  # pickle refuses a local function either way
        atomic_save({"format": BUNDLE_FORMAT, "n": 2, "unpicklable": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.pt"]  # no temp file left behind


def test_a_config_asking_for_a_huge_network_is_refused_before_anything_is_built(tiny_bundle, tmp_path):
    # The weights stay small; the config claims a million hidden units (an LSTM of 16 TB): the shapes are
    # compared on the meta device first, so the refusal names them and allocates nothing.
    obj = torch.load(tiny_bundle, weights_only=True)
    obj["net_config"] = {**obj["net_config"], "hidden": 10**6}
    huge = tmp_path / "huge.pt"
    torch.save(obj, huge)
    started = time.monotonic()
    with pytest.raises(
        BundleError, match=r"do not match the network its config describes \(.*1000000\] for the config\)"
    ):
        load_bundle(huge)
    assert time.monotonic() - started < 5
    # A weight missing or extra is named the same way.
    obj = torch.load(tiny_bundle, weights_only=True)
    obj["state_dict"]["extra.weight"] = torch.zeros(2)
    torch.save(obj, huge)
    with pytest.raises(BundleError, match=r"extra\.weight: \[2\] in the file, none for the config"):
        load_bundle(huge)


def test_the_hash_is_of_the_bytes_loaded_even_if_the_file_is_replaced_meanwhile(tiny_bundle, tmp_path, monkeypatch):
    """Another process may os.replace the bundle while it loads: the hash must name what was loaded, not the
    file's new contents (a process that watches the file compares the two)."""
    import hashlib

    from model import checkpoint

    path = tmp_path / "live.pt"
    path.write_bytes(tiny_bundle.read_bytes())
    original = checkpoint._read

    def read_then_replace(where):
        data = original(where)
        path.write_bytes(b"a newer bundle, half written")  # lands between the read and the hashing
        return data

    monkeypatch.setattr(checkpoint, "_read", read_then_replace)
    bundle = load_bundle(path)
    assert bundle.sha256 == hashlib.sha256(tiny_bundle.read_bytes()).hexdigest()
    assert bundle.sha256 != hashlib.sha256(path.read_bytes()).hexdigest()
