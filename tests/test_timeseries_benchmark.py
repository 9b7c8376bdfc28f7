"""benchmarks/ucr.py keeps its raw runs in the markdown it writes, so later runs can merge."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ucr.py"


@pytest.fixture(scope="module")
def ucr():
    spec = importlib.util.spec_from_file_location("ucr_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_and_merge_round_trip(ucr, tmp_path):
    base = {
        "n_train": 50,
        "n_test": 150,
        "length": 150,
        "equal_length": True,
        "channels": 1,
        "classes": 2,
        "one_nn": 0.913,
        "one_nn_input": 0.913,
        "random_init": 0.9,
    }
    runs = [
        {
            "dataset": "GunPoint",
            "method": "ts2vec",
            "seed": s,
            "svm_accuracy": a,
            "n_iters": 200,
            "train_seconds": 60.0,
        }
        for s, a in ((0, 0.98), (1, 0.96))
    ]
    out = tmp_path / "ucr.md"
    ucr.write(out, runs, {"GunPoint": {"dataset": "GunPoint", **base}}, ["cmd one"])
    text = out.read_text()
    assert (
        "| GunPoint | 50/150 | 150 | 1 | 2 | 0.913 | 0.913 | 0.913 | 0.900 | 0.980 | 0.970 ± 0.014 (2) |"
        in text
    )
    assert "GunPoint/autotcl" in text  # what was not run is listed
    again, bases, commands = ucr.load_previous(out)
    assert again == runs and commands == ["cmd one"] and bases["GunPoint"]["one_nn"] == 0.913
    assert ucr.load_previous(tmp_path / "missing.md") == ([], {}, [])


def test_merge_only_replaces_a_stale_note(ucr, tmp_path, monkeypatch):
    rescored = {"one_nn": 0.9, "random_init": 0.8}
    monkeypatch.setattr(ucr, "baselines", lambda dataset, threads: rescored)
    monkeypatch.setattr(
        ucr,
        "write",
        lambda path, runs, bases, commands, notes: seen.update(runs=runs, bases=bases, notes=notes),
    )
    seen: dict = {}
    out = tmp_path / "ucr.md"
    run = {"dataset": "GunPoint", "method": "ts2vec", "seed": 0}
    raw = {"runs": [run], "baselines": {"GunPoint": {}}, "commands": ["a"]}
    raw["notes"] = ["One seed so far.", "Kept."]
    out.write_text(f"table\n{ucr.RAW_MARK}{ucr.json.dumps(raw)} -->\n")
    ucr.main(
        [
            "--out",
            str(out),
            "--merge",
            "--merge-only",
            "--drop-note",
            "One seed",
            "--note",
            "Three seeds.",
        ]
    )
    assert seen["notes"] == ["Kept.", "Three seeds."]
    assert seen["runs"] == raw["runs"] and seen["bases"] == {"GunPoint": rescored}


def test_commands_show_notes_elided(ucr):
    command = "python benchmarks/ucr.py --merge-only --note 'a long note' --drop-note old"
    assert (
        ucr._elide_notes(command)
        == "python benchmarks/ucr.py --merge-only --note ... --drop-note ..."
    )
