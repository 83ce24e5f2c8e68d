import stat

import pytest

from bert4rec.io import atomic_path, atomic_write_text


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    atomic_write_text(target, "new", mode=0o644)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".csv"  # writers that pick the format from the name still can
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_write_json_and_markdown_writes_both_files_atomically(tmp_path):
    import json

    from bert4rec.io import write_json_and_markdown

    folder = tmp_path / "study"  # created on demand
    json_path, md_path = write_json_and_markdown(folder, "run", {"model": "bert4rec", "x": [1, 2]}, "| a |\n")
    assert json.loads(json_path.read_text()) == {"model": "bert4rec", "x": [1, 2]}
    assert json_path.read_text().endswith("}\n")  # ends with a newline, as every results file
    assert md_path.read_text() == "| a |\n"
    assert sorted(p.name for p in folder.iterdir()) == ["run.json", "run.md"]  # no temporary file left
