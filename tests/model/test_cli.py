"""`python -m model` driven as a user would, in a subprocess."""

import json
import shutil
import zipfile

import pytest

from model.corpus import load_corpus
from tests.helpers import REPO, SAMPLE_CORPUS, TINY_FLAGS, run_cli

TINY = TINY_FLAGS


def cli(*args, timeout=120, cwd=REPO):
    return run_cli(*args, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m.pt"
    result = cli("train", "--corpus", SAMPLE_CORPUS, "--out", out, "--epochs", "2", "--progress", "jsonl", *TINY)
    assert result.returncode == 0, result.stderr
    return out, [json.loads(line) for line in result.stdout.splitlines()]


def test_train_reports_jsonl_events(trained):
    out, events = trained
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("epoch") == 2 and "checkpoint" in kinds and "step" in kinds
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"train_loss", "heldout_loss", "bpc", "lr", "seconds"} <= set(epoch)
    assert out.exists() and out.with_suffix(".ckpt").exists()


def test_train_prints_epoch_lines_for_people(tmp_path):
    result = cli("train", "--corpus", SAMPLE_CORPUS, "--out", tmp_path / "m.pt", "--epochs", "1", *TINY)
    assert result.returncode == 0, result.stderr
    assert "held-out bpc" in result.stdout and "wrote" in result.stdout


def test_evaluate_json(trained):
    out, events = trained
    result = cli("evaluate", out, "--corpus", SAMPLE_CORPUS, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"bpc", "static_bpc", "trigram_bpc", "chars", "unk_chars", "net_bpc"} <= set(figures)
    # evaluate scores the test half of the held-out tail, exactly as training reported it
    for key in ("bpc", "static_bpc", "net_bpc", "trigram_bpc"):
        assert figures[key] == pytest.approx(events[-1][key], rel=1e-6), key
    assert figures["chars"] == events[-1]["heldout_chars"]
    # dev (what training stops on) and test are the two halves of the held-out tail
    assert events[0]["heldout_chars"] + figures["chars"] == len(load_corpus(SAMPLE_CORPUS).heldout)


def test_generate_prints_a_song(trained):
    out, _ = trained
    result = cli("generate", out, "窗外的麻雀", "--temperature", "0.8", "--length", "40", "--random-seed", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("窗外的麻雀")
    again = cli("generate", out, "窗外的麻雀", "--temperature", "0.8", "--length", "40", "--random-seed", "4")
    assert again.stdout == result.stdout
    assert "random seed 4" in result.stderr
    exact = cli("generate", out, "窗外的麻雀", "--length", "40", "--random-seed", "4", "--precision", "float32")
    assert exact.returncode == 0 and exact.stdout.startswith("窗外的麻雀"), exact.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--corpus", "no/such.txt"], "no such file"),
        (["generate", "no/such.pt", "雨"], "no such file"),
        (["generate", "BUNDLE", "雨", "--temperature", "1e9"], "temperature"),
        (["generate", "BUNDLE", "雨", "--precision", "half"], "invalid choice: 'half'"),
        (["train", "--corpus", "CORPUS", "--device", "tpu"], "unknown device"),
    ],
)
def test_bad_input_gets_one_clear_line(trained, args, message):
    out, _ = trained
    args = [str(out) if a == "BUNDLE" else str(SAMPLE_CORPUS) if a == "CORPUS" else a for a in args]
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_gbk_corpus_trains(tmp_path):
    corpus = tmp_path / "gbk.txt"
    corpus.write_bytes(SAMPLE_CORPUS.read_text(encoding="utf-8").encode("gbk"))
    result = cli("train", "--corpus", corpus, "--out", tmp_path / "m.pt", "--epochs", "1", "--progress", "none", *TINY)
    assert result.returncode == 0, result.stderr


def test_error_event_in_jsonl_mode(tmp_path):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"\xff\xfe\xff\x80\x80")
    result = cli("train", "--corpus", corpus, "--progress", "jsonl")
    assert result.returncode == 2
    event = json.loads(result.stdout.splitlines()[-1])
    assert event["event"] == "error" and "not UTF-8 or GBK" in event["message"]


def test_the_default_corpus_and_the_sample_note(trained, tmp_path):
    # Run where data/ holds the sample only (a fresh clone offline), then where fetch has put the corpus.
    out, events = trained
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE_CORPUS, tmp_path / "data" / "sample_lyrics.txt")
    sample = cli("evaluate", out, "--json", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert "sample_lyrics.txt" in sample.stderr and "python -m model fetch" in sample.stderr
    assert json.loads(sample.stdout)["bpc"] == pytest.approx(events[-1]["bpc"], rel=1e-6)

    with zipfile.ZipFile(tmp_path / "data" / "jaychou_lyrics.txt.zip", "w") as archive:
        archive.write(SAMPLE_CORPUS, "jaychou_lyrics.txt")  # stands in for the fetched corpus
    fetched = cli("evaluate", out, "--json", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert "python -m model fetch" not in fetched.stderr
    assert json.loads(fetched.stdout)["corpus_sha256"] == json.loads(sample.stdout)["corpus_sha256"]

    # train says so too, before anything else (here it then stops at once on a device it does not know).
    result = cli("train", "--device", "tpu", cwd=tmp_path)
    assert result.returncode == 2 and "python -m model fetch" not in result.stderr
    (tmp_path / "data" / "jaychou_lyrics.txt.zip").unlink()
    result = cli("train", "--device", "tpu", cwd=tmp_path)
    assert result.returncode == 2 and "note: using data/sample_lyrics.txt" in result.stderr
    assert "python -m model fetch" in result.stderr and "unknown device" in result.stderr
