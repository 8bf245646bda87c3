"""The README results table is generated from benchmarks/results/*.json: it must match, and no figure may lack a source."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
rt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rt)


def test_readme_and_docs_tables_are_the_generated_ones():
    assert rt.main(["--check"]) == 0, "python benchmarks/readme_table.py --write"


def test_every_row_has_a_source_file():
    for r in rt.rows():
        assert (ROOT / "benchmarks" / "results" / r["source"]).exists()


PROV = {"command_line": "python b.py", "git_commit": "abc", "start_utc": "2026-12-06T09:00:00Z",
        "machine_before": {"cpu_capability": "AVX2", "torch_threads": 1, "loadavg": [0.1, 0.2, 0.3]},
        "loadavg_after": [0.2, 0.2, 0.3]}


def test_verdicts_are_computed_from_the_goal():
    data = {"acc": 0.87, "ci": [0.85, 0.89], "r": 1.41, "lo": 1.37, "hi": 1.51, "n": 5}
    goal = {"value": "acc", "op": ">=", "target": 0.88, "ci": ["ci|0", "ci|1"]}
    assert rt.verdict(goal, data, "t") == "≥ 0.88 undecided (interval includes 0.88)"
    assert rt.verdict({**goal, "target": 0.8}, data, "t") == "≥ 0.8 ✓"
    assert rt.verdict({**goal, "target": 0.9}, data, "t") == "≥ 0.9 ✗"
    assert rt.verdict({"value": "r", "op": ">=", "target": 2, "ci": ["lo", "hi"], "note": "{n} rounds"}, data, "t") \
        == "≥ 2 ✗; 5 rounds"
    assert rt.verdict({"value": "r", "op": "<", "target": 2, "label": "under 2"}, data, "t") == "under 2 ✓"
    assert rt.verdict({}, data, "t") == "—"


def test_only_files_with_provenance_are_headline_figures():
    assert rt.provenance_missing(PROV) == []
    assert rt.provenance_missing({"provenance": PROV, "x": 1}) == []
    assert rt.provenance_missing({**PROV, "recorded_from": "RESULTS.md"}) == ["typed from prose"]
    partial = {k: v for k, v in PROV.items() if k != "loadavg_after"}
    assert rt.provenance_missing(partial) == ["load after"]


def test_a_typed_number_or_missing_key_is_refused():
    data = {"a": {"b": [0.5, 0.25]}, "n": 3}
    assert rt.render("SST-2: {a|b|0:.2f} of {n} (bf16)", data, "t") == "SST-2: 0.50 of 3 (bf16)"
    with pytest.raises(rt.SourceError):
        rt.render("{a|b|0:.2f} of 200", data, "t")       # 200 typed by hand
    with pytest.raises(rt.SourceError):
        rt.render("−0.40", data, "t")
    with pytest.raises(rt.SourceError):
        rt.render("{a|c}", data, "t")                      # no such key
