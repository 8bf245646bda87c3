"""The README results table is generated from benchmarks/results/*.json: it must match, and no figure may lack a source."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
rt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rt)


def test_readme_table_is_the_generated_one():
    block = rt.readme_table((ROOT / "README.md").read_text())
    assert block is not None, "README.md lost its results-table markers"
    assert block == rt.table(), "README results table differs from benchmarks/results: python benchmarks/readme_table.py --write"


def test_every_row_has_a_source_file():
    for what, fig, goal, src in rt.rows():
        assert (ROOT / "benchmarks" / "results" / src).exists()


def test_a_typed_number_or_missing_key_is_refused():
    data = {"a": {"b": [0.5, 0.25]}, "n": 3}
    assert rt.render("SST-2: {a|b|0:.2f} of {n} (bf16)", data, "t") == "SST-2: 0.50 of 3 (bf16)"
    with pytest.raises(rt.SourceError):
        rt.render("{a|b|0:.2f} of 200", data, "t")       # 200 typed by hand
    with pytest.raises(rt.SourceError):
        rt.render("−0.40", data, "t")
    with pytest.raises(rt.SourceError):
        rt.render("{a|c}", data, "t")                      # no such key
