import os
import stat

from model.files import atomic_write, current_umask


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_keeps_the_replaced_files_mode_and_gives_a_new_file_opens_mode(tmp_path):
    # A new file gets what open() would give it (0o666 less the umask), not mkstemp's 0600: a shard process
    # under another user must be able to read the models the trainer writes.
    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        fresh = tmp_path / "fresh.pt"
        atomic_write(fresh, lambda handle: handle.write(b"new"))
        assert mode_of(fresh) == 0o644
        os.umask(0o027)
        atomic_write(tmp_path / "private.pt", lambda handle: handle.write(b"new"))
        assert mode_of(tmp_path / "private.pt") == 0o640
    finally:
        os.umask(old)
    # A file replaced keeps the mode its owner gave it, wider or narrower.
    for mode in (0o664, 0o600):
        fresh.chmod(mode)
        atomic_write(fresh, lambda handle: handle.write(b"newer"))
        assert mode_of(fresh) == mode and fresh.read_bytes() == b"newer"
