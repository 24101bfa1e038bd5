"""smtp-client's local delivery journal on a real directory: what a killed run leaves
is read back, acknowledged segments go, forgotten keys are not replayed."""

from __future__ import annotations

import os
from pathlib import Path

from egress.smtp_client.journal import Journal, read_entries


def test_marks_written_are_read_back_by_the_next_run_merged_per_key(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    assert first.open() == []
    first.append("m1/a.test", "m1", "a.test", ["x@a.test"], "250 2.0.0 Ok: queued as 1")
    first.append("m1/a.test", "m1", "a.test", ["y@a.test"])
    first.append("m2/b.test", "m2", "b.test", ["z@b.test"])
    # No close, no acknowledgement: as after kill -9.
    found = {e.key: e for e in Journal(tmp_path).open()}
    assert sorted(found) == ["m1/a.test", "m2/b.test"]
    assert found["m1/a.test"].recipients == ["x@a.test", "y@a.test"]
    assert found["m1/a.test"].reply == "250 2.0.0 Ok: queued as 1" and found["m2/b.test"].mail_id == "m2"


def test_forgotten_keys_and_a_cut_last_line_are_not_replayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append("m1/a.test", "m1", "a.test", ["x@a.test"])
    journal.append("m2/a.test", "m2", "a.test", ["y@a.test"])
    journal.forgot(["m1/a.test"])
    with open(journal.files()[-1], "ab") as f:
        f.write(b'{"k":"m3/a.test","m":"m3","r":["w@a')  # a machine crash without fsync
    assert [e.key for e in read_entries(journal.files())] == ["m2/a.test"]


def test_a_segment_is_deleted_only_once_every_mark_in_it_and_before_it_is_acknowledged(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    slow = journal.append("m1/a.test", "m1", "a.test", ["x@a.test"])
    journal.rotate()
    fast = journal.append("m2/a.test", "m2", "a.test", ["y@a.test"])
    journal.rotate()
    journal.acknowledged(fast)
    journal.rotate()
    assert len(journal.files()) == 3, "the segment of the unacknowledged mark and those after it stay"
    assert [e.key for e in read_entries(journal.files())] == ["m1/a.test", "m2/a.test"]
    journal.acknowledged(slow)
    journal.rotate()
    assert len(journal.files()) == 1 and read_entries(journal.files()) == []
    journal.close()
    assert list(tmp_path.iterdir()) == [], "a clean stop with everything acknowledged leaves nothing"


def test_earlier_runs_segments_stay_until_their_replay_is_acknowledged(tmp_path: Path) -> None:
    killed = Journal(tmp_path)
    killed.open()
    killed.append("m1/a.test", "m1", "a.test", ["x@a.test"])
    again = Journal(tmp_path)
    assert [e.key for e in again.open()] == ["m1/a.test"]
    again.rotate()
    assert len(again.files()) == 2  # held: the replay is not on Kafka yet
    again.recovered()
    assert len(again.files()) == 1 and not read_entries(again.files())


async def test_fsync_batches_return_once_written_lines_are_synced(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync=True)
    journal.open()
    journal.append("m1/a.test", "m1", "a.test", ["x@a.test"])
    await journal.synced()
    size = os.stat(journal.files()[-1]).st_size
    assert size > 0 and journal._synced == journal._written == 1
