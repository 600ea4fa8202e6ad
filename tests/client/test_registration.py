"""Registering leaves no half-made data folder, and a wrong code may be typed again."""

from __future__ import annotations

from pathlib import Path

from tresen.client.api import RelayError
from tresen.client.registration import CODE_ATTEMPTS, CodeAttempts, NewFolder
from tresen.core.errors import ErrorCode


def make_data(folder: Path) -> None:
    """What opening a client writes into its folder."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "key").write_bytes(b"k")
    (folder / "client.db").write_bytes(b"db")
    (folder / "sub" / "x").write_text("x")


def test_a_folder_that_did_not_exist_goes_with_the_parents_made_for_it(tmp_path: Path) -> None:
    folder = tmp_path / "share" / "tresen" / "chat"
    noted = NewFolder(folder)
    assert noted.fresh
    make_data(folder)
    noted.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_parent_that_gained_other_things_stays(tmp_path: Path) -> None:
    folder = tmp_path / "share" / "chat"
    noted = NewFolder(folder)
    make_data(folder)
    (tmp_path / "share" / "other").write_text("not ours")
    noted.discard()
    assert [p.name for p in (tmp_path / "share").iterdir()] == ["other"]


def test_an_empty_folder_is_emptied_again_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "chat"
    folder.mkdir()
    noted = NewFolder(folder)
    assert noted.fresh
    make_data(folder)
    noted.discard()
    assert folder.is_dir()
    assert list(folder.iterdir()) == []


def test_a_folder_that_held_anything_is_never_touched(tmp_path: Path) -> None:
    folder = tmp_path / "chat"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    noted = NewFolder(folder)
    assert not noted.fresh
    make_data(folder)
    noted.discard()
    assert sorted(p.name for p in folder.iterdir()) == ["client.db", "key", "notes.txt", "sub"]


def wrong(attempts_left: int | None = None) -> RelayError:
    details = {} if attempts_left is None else {"attempts_left": attempts_left}
    return RelayError(ErrorCode.CODE_INCORRECT, "the code is not correct", details)


def test_a_wrong_code_may_be_typed_again_a_few_times() -> None:
    attempts = CodeAttempts()
    left = [attempts.retry(wrong()) for _ in range(CODE_ATTEMPTS)]
    assert left == [CODE_ATTEMPTS - n for n in range(1, CODE_ATTEMPTS + 1)]
    assert left[-1] == 0
    # The relay's count wins when it allows fewer.
    assert CodeAttempts().retry(wrong(attempts_left=0)) == 0
    # An expired code, or too many tries: asking again cannot help.
    assert CodeAttempts().retry(RelayError(ErrorCode.CODE_EXPIRED, "expired")) == 0
    assert CodeAttempts().retry(RelayError(ErrorCode.CODE_ATTEMPTS_EXCEEDED, "later")) == 0
