import pytest

from histexpr.atomic import atomic_dir, atomic_path


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_outputs_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    with atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~mask
    with atomic_dir(tmp_path / "d"):
        pass
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_atomic_file_writer_base(tmp_path):
    from histexpr.atomic import AtomicFileWriter

    class LineWriter(AtomicFileWriter):
        def __init__(self, path):
            self._fh = open(self._begin(path, suffix=".txt"), "w")

        def write(self, text):
            self._fh.write(text)

        def _finalize(self):
            self._fh.write("END\n")

        def _close_handle(self):
            self._fh.close()

    with LineWriter(tmp_path / "ok.txt") as w:
        w.write("a\n")
    assert (tmp_path / "ok.txt").read_text() == "a\nEND\n"
    with pytest.raises(ValueError), LineWriter(tmp_path / "bad.txt") as w:
        w.write("half")
        raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.txt"]
