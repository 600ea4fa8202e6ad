"""A client's data folder is opened by one client at a time, in this process or another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tresen.client.lock import FolderInUse
from tresen.client.sdk import Client


async def test_a_data_folder_is_opened_once_at_a_time(tmp_path: Path) -> None:
    first = Client.open(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(FolderInUse) as refused:
        Client.open(tmp_path, "http://127.0.0.1:9")
    assert refused.value.folder == tmp_path
    assert refused.value.holder.startswith(f"process {os.getpid()} (")
    assert f"{tmp_path} is in use by process {os.getpid()}" in str(refused.value)

    await first.close()
    # Closed: the folder is free again, and the lock no longer names anyone.
    assert (tmp_path / "lock").read_text() == ""
    second = Client.open(tmp_path)
    await second.close()
