"""The file-backed metadata log shared by the brokers of one cluster."""

from __future__ import annotations

from workbench.controller.file_log import FileMetadataLog


def test_two_writers_see_each_others_records(tmp_path):
    a, b = FileMetadataLog(tmp_path), FileMetadataLog(tmp_path)
    a.commit(lambda image: [{"t": "broker", "id": 1, "host": "h", "port": 1}])
    b.commit(lambda image: [{"t": "broker", "id": 2, "host": "h", "port": 2}])
    a.catch_up()
    assert sorted(a.image.brokers) == sorted(b.image.brokers) == [1, 2]


def test_listeners_hear_of_records_caught_up_inside_a_commit_that_adds_none(tmp_path):
    a, b = FileMetadataLog(tmp_path), FileMetadataLog(tmp_path)
    heard = []
    b.add_listener(lambda image: heard.append(sorted(image.brokers)))
    a.commit(lambda image: [{"t": "broker", "id": 1, "host": "h", "port": 1}])
    b.commit(lambda image: [])  # catches up with a's record, appends nothing
    assert heard == [[1]]


def test_torn_tail_is_ignored_and_cut_by_the_next_writer(tmp_path):
    a = FileMetadataLog(tmp_path)
    a.commit(lambda image: [{"t": "broker", "id": 1, "host": "h", "port": 1}])
    with open(tmp_path / "log.jsonl", "ab") as f:
        f.write(b'{"t":"broker","id":9,"ho')  # a writer died mid-record
    b = FileMetadataLog(tmp_path)
    assert sorted(b.image.brokers) == [1]
    b.commit(lambda image: [{"t": "broker", "id": 2, "host": "h", "port": 2}])
    c = FileMetadataLog(tmp_path)
    assert sorted(c.image.brokers) == [1, 2]


def test_a_change_that_raises_writes_nothing(tmp_path):
    a = FileMetadataLog(tmp_path)

    def refuse(image):
        raise ValueError("no")

    try:
        a.commit(refuse)
    except ValueError:
        pass
    assert (tmp_path / "log.jsonl").read_bytes() == b""
