"""Declared records: the mechanism (strict writing, tolerant reading, older keys, schemas) and, end to end, every
file every command writes on the fixed tiny run read back through its record and checked against its schema."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from softscope.engine.runs import read_records
from softscope.records import (REGISTRY, DescriptionRow, MetricsRow, PromptMeta, Record, RecordError, TrainSummary,
                               WaywardRow, WeightSweepSummary, DiscreteRun, all_records, declare, doc, json_schema,
                               record_type)

ROOT = Path(__file__).resolve().parents[1]
jsonschema = pytest.importorskip("jsonschema")


def test_a_writer_cannot_write_an_undeclared_key():
    with pytest.raises(RecordError, match="WaywardRow: undeclared key 'gama'"):
        WaywardRow.of({"target": "t", "gama": 0.5})
    with pytest.raises(RecordError, match="no record type is declared for notes.json"):
        from softscope.engine.runs import declared
        declared("notes.json", {})


def test_writing_keeps_declared_order_and_leaves_out_unset_optional_keys():
    row = WaywardRow.of({"gamma": 0.5, "target": "t"})
    assert list(row)[:5] == ["target", "target_text", "n_tokens", "gamma", "seed"]
    assert row["gamma"] == 0.5 and row["accuracy"] is None
    assert "dev_accuracy" not in row and "prompt" not in row  # optional: only some runs write them
    # named loss terms are written flat beside the declared keys and read back into `values`
    m = MetricsRow.of({"step": 3, "event": "train", "loss": 1.5, "lr": 0.1, "fluency": 2.25})
    assert m == {"step": 3, "event": "train", "loss": 1.5, "lr": 0.1, "fluency": 2.25}
    assert MetricsRow.from_dict(m).values == {"fluency": 2.25}


def test_reading_is_tolerant_and_maps_older_keys():
    old = {"src": 2, "tgt": 1, "description": "positive or negative", "semantic_similarity": 0.75, "new": 1}
    r = DescriptionRow.from_dict(old)
    assert (r.source_layer, r.target_layer, r.text, r.similarity) == (2, 1, "positive or negative", 0.75)
    assert r.shown_text == "positive or negative" and r.score("similarity") == 0.75
    assert r.shown() == {"source_layer": 2, "target_layer": 1, "text": "positive or negative", "similarity": 0.75}
    s = TrainSummary.from_dict({"final_accuracy": 0.8, "checkpoints": [{"step": 2, "accuracy": 0.5}], "x": [1]})
    assert s.checkpoints[0].step == 2 and s.headline() == (None, None, 0.8)
    assert TrainSummary.from_dict([1, 2]).final_accuracy is None  # not an object: every field at its default


def test_files_that_share_a_name_are_told_apart_by_their_keys():
    assert record_type("pez_summary.json", {"task": "t", "runs": []}) is WeightSweepSummary
    assert record_type("pez_summary.json", {"method": "pez", "fluency_weight": 0}) is DiscreteRun
    assert record_type("w-0/rlprompt_summary.json", {"method": "rlprompt"}) is DiscreteRun


def test_every_field_is_documented():
    @dataclass
    class Bad(Record):
        x: int | None = None

    with pytest.raises(TypeError, match="Bad.x has no doc"):
        declare(Bad)
    for t in all_records():
        assert all(text for _, _, _, text, _ in t.field_docs()), t


def test_the_schemas_are_valid_and_discriminate():
    for t in all_records():
        jsonschema.Draft202012Validator.check_schema(json_schema(t))
    v = jsonschema.Draft202012Validator(json_schema(TrainSummary))
    good = TrainSummary.of({"task": "t", "final_accuracy": 0.5, "checkpoints": [{"step": 0, "accuracy": 0.5}],
                            "truncated": {"train": 0, "test": 1, "max_length": 80}})
    assert list(v.iter_errors(good)) == []
    bad = {**good, "checkpoints": [{**good["checkpoints"][0], "step": "zero"}]}
    assert [e.message for e in v.iter_errors(bad)] == ["'zero' is not of type 'integer'"]
    assert [e.message for e in v.iter_errors({k: v for k, v in good.items() if k != "steps"})] == [
        "'steps' is a required property"]
    assert "steps" in json_schema(TrainSummary)["properties"]["steps"]["description"]  # the unit is in the text


# ---- end to end: every file of every command on the fixed tiny run ------------------------------------------
def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def fixed_tiny_run(tiny_model_dir, tiny_task_file, tmp_path_factory):
    """The commands benchmarks/compare_outputs.py runs (every command, its fixed tiny settings), in-process."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_outputs import commands
    from softscope.cli import main
    import os

    out = tmp_path_factory.mktemp("fixed")
    here = os.getcwd()
    os.chdir(out)
    try:
        for name, argv in commands(str(tiny_model_dir), str(tiny_task_file)):
            try:
                main(argv)
            except SystemExit as e:
                assert e.code in (0, None), f"{name}: exit {e.code}"
    finally:
        os.chdir(here)
    return out


def test_every_file_every_command_writes_reads_back_through_its_record(fixed_tiny_run):
    seen, validators = set(), {}
    files = [p for p in sorted(fixed_tiny_run.rglob("*.json*")) if p.suffix in (".json", ".jsonl")]
    assert len(files) > 100
    for p in files:
        strict = {"parse_constant": lambda c: pytest.fail(f"{p}: {c} in a run file (non-finite values are null)")}
        raw = ([json.loads(line, **strict) for line in p.read_text().splitlines() if line.strip()]
               if p.suffix == ".jsonl" else [json.loads(p.read_text(), **strict)])
        if len(raw) == 1 and isinstance(raw[0], list):  # a JSON list of rows (compare.json)
            raw = raw[0]
        sidecar = p.with_suffix(".safetensors").exists()
        t = PromptMeta if sidecar else record_type(p.name, raw[0] if raw else None)
        assert t is not None, f"{p.relative_to(fixed_tiny_run)} has no declared record"
        back = read_records(p, t)
        back = back if isinstance(back, list) else [back]
        assert all(_same(r.to_dict(), d) for r, d in zip(back, raw)), p
        if t.__name__ not in validators:
            schema = json.loads((ROOT / "docs" / "schemas" / f"{t.__name__}.json").read_text())
            validators[t.__name__] = jsonschema.Draft202012Validator(schema)
        for d in raw:
            errors = [e.message for e in validators[t.__name__].iter_errors(d)]
            assert errors == [], (p, errors[:3])
        seen.add(t)
    assert {t for types in REGISTRY.values() for t in types} - seen <= {
        REGISTRY["positive_control.json"][0]}  # the fixed run has no positive control (tests/test_bias.py has)


def test_report_and_the_readers_know_no_key_by_string():
    """They read declared records: no `.get("key")`, no `obj["key"]` on run data (a colour map is not run data)."""
    import ast

    found = []
    for rel in ("src/softscope/report/html.py", "src/softscope/report/parts.py", "src/softscope/report/sections.py",
                "src/softscope/engine/readers.py"):
        for node in ast.walk(ast.parse((ROOT / rel).read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.append(f"{rel}:{node.lineno} .get({node.args[0].value!r})")
            if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str) and ast.unparse(node.value) != "colormaps"):
                found.append(f"{rel}:{node.lineno} [{node.slice.value!r}]")
    assert found == []


def test_a_folder_an_older_softscope_wrote_still_reports(tmp_path):
    """Older describe rows (src/tgt/description/semantic_similarity, no checkpoint) read through the aliases."""
    from softscope.report.html import build_report

    (tmp_path / "describe_summary.json").write_text(json.dumps({"task": "sst2", "pairs": 2}))
    rows = [{"step": 4, "src": 1, "tgt": s, "description": f"text {s}", "semantic_similarity": 0.25 * s}
            for s in (1, 2)]
    (tmp_path / "descriptions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = build_report(tmp_path).read_text()
    assert 'data-src="1" data-tgt="2">0.50</td>' in page and "text 2" in page
