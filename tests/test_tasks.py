"""Task loading: built-ins from the shared data folder, user files and folders, Hub conversion, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softscope.engine import tasks
from softscope.engine.errors import SoftscopeError
from softscope.engine.tasks import BUILTIN, WAYWARD_TEMPLATES, Example, Task, data_dir, list_tasks, load_task

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "sst2" / "train.jsonl").is_file(), reason="no ../shared/data")

ROWS = [("a great film", "pos"), ("awful", "neg"), ("loved it", "pos"), ("boring", "neg"), ("fine work", "pos"),
        ("dull", "neg"), ("superb", "pos"), ("weak plot", "neg"), ("moving", "pos"), ("bad acting", "neg")]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_sv(path: Path, header: list[str], rows: list[tuple], sep: str) -> Path:
    lines = [sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_line_error(match: str, fn, *args, **kw) -> str:
    with pytest.raises(SoftscopeError, match=match) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("SOFTSCOPE_DATA", raising=False)


# ---- built-ins --------------------------------------------------------------------------------------------

@needs_shared
def test_builtin_sst2_from_shared_data():
    t = load_task("sst2", data_dir=str(SHARED))
    assert t.classes == ["negative", "positive"] and t.label_words == t.classes
    assert (len(t.train), len(t.test), len(t.dev)) == (6920, 1821, 872)
    assert t.text_field == "Sentence" and t.template == "Sentence : {text} Label :"
    assert {ex.label for ex in t.test} == {"negative", "positive"}
    assert len(t.references) >= 8  # 5 from good_prompts.json + our own
    assert any("positive or negative" in r.lower() for r in t.references)
    d = t.to_dict()
    assert d["sizes"] == {"train": 6920, "test": 1821, "dev": 872} and "train" not in d
    json.dumps(d)


@needs_shared
def test_builtin_found_without_data_dir_and_aliases():
    t = load_task("SST-2", max_train=50, max_test=20, seed=3)
    assert t.name == "sst2" and (len(t.train), len(t.test)) == (50, 20)
    assert load_task("trec", max_train=5).classes == list(BUILTIN["trec"].classes)
    assert load_task("ag_news", max_train=5).text_field == "Article"


@needs_shared
def test_builtin_env_var(monkeypatch):
    monkeypatch.setenv("SOFTSCOPE_DATA", str(SHARED))
    assert data_dir() == SHARED
    monkeypatch.setenv("SOFTSCOPE_DATA", "/nonexistent/folder")
    one_line_error("SOFTSCOPE_DATA", data_dir)


def test_builtin_specs_and_wayward_templates():
    assert set(BUILTIN) == {"sst2", "sst5", "subj", "agnews", "trec"}
    assert BUILTIN["sst5"].classes == ("terrible", "bad", "okay", "good", "great")
    for name, spec in BUILTIN.items():
        assert len(spec.references) >= 3
        assert spec.template.endswith("Label :")
        assert "{text}" in WAYWARD_TEMPLATES[name] and not WAYWARD_TEMPLATES[name].endswith(" ")
    names = [d["name"] for d in list_tasks()]
    assert names == list(BUILTIN)


def test_builtin_explicit_data_dir_without_task(tmp_path):
    one_line_error("--data-dir", load_task, "sst2", data_dir=str(tmp_path))
    one_line_error("does not exist", load_task, "sst2", data_dir=str(tmp_path / "missing"))


def test_builtin_local_folder_label_check(tmp_path):
    d = tmp_path / "subj"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"text": "x", "label": "subjective"}, {"text": "y", "label": "objective"}])
    write_jsonl(d / "test.jsonl", [{"text": "z", "label": "neutral"}])
    msg = one_line_error("unknown label 'neutral'", load_task, "subj", data_dir=str(tmp_path))
    assert "line 1" in msg and "subjective, objective" in msg


def test_builtin_hub_fallback_converts_labels(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(tasks, "_candidate_dirs", lambda explicit: [])
    coarse = datasets.ClassLabel(names=["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])
    feats = datasets.Features({"text": datasets.Value("string"), "coarse_label": coarse})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["What is NASA ?", "Who is he ?", "Where ?"],
                                             "coarse_label": [0, 3, 4]}, features=feats),
        "test": datasets.Dataset.from_dict({"text": ["How many ?", "What does DNA mean ?"],
                                            "coarse_label": [5, 0]}, features=feats)})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or dd)
    t = load_task("trec")
    assert calls == [("CogComp/trec",)] and t.source == "hub:CogComp/trec"
    assert [ex.label for ex in t.train] == ["abbreviation", "human", "location"]
    assert [ex.label for ex in t.test] == ["number", "abbreviation"]


def test_builtin_hub_failure_is_one_line(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(tasks, "_candidate_dirs", lambda explicit: [])

    def fail(*a, **k):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    msg = one_line_error("SOFTSCOPE_DATA", load_task, "sst5")
    assert "--data-dir" in msg and "SetFit/sst5" in msg


def test_hub_spec_uses_classlabel_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"])})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["good", "bad", "nice", "poor"], "label": [1, 0, 1, 0]},
                                            features=feats),
        "validation": datasets.Dataset.from_dict({"sentence": ["ok", "meh"], "label": [1, 0]}, features=feats),
        "test": datasets.Dataset.from_dict({"sentence": ["?", "?"], "label": [-1, -1]}, features=feats)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    t = load_task("hub:someone/reviews")
    assert t.name == "reviews" and t.classes == ["negative", "positive"]
    assert [ex.label for ex in t.test] == ["positive", "negative"]  # hidden test labels -> validation
    assert t.template == "Sentence : {text} Label :"


# ---- user files -------------------------------------------------------------------------------------------

def test_jsonl_file_split_80_20(tmp_path):
    p = write_jsonl(tmp_path / "reviews.jsonl", [{"text": t, "label": y} for t, y in ROWS])
    t = load_task(str(p), seed=1)
    assert t.name == "reviews" and t.classes == ["neg", "pos"] and t.label_words == ["neg", "pos"]
    assert (len(t.train), len(t.test), len(t.dev)) == (8, 2, 0)
    assert sorted(ex.label for ex in t.test) == ["neg", "pos"]  # stratified
    assert {ex.text for ex in t.train} | {ex.text for ex in t.test} == {r[0] for r in ROWS}
    again = load_task(str(p), seed=1)
    assert again.test == t.test and again.train == t.train
    assert t.template == "Text : {text} Label :" and t.format(t.test[0]).startswith("Text : ")
    assert len(t.references) >= 3 and "neg" in t.references[0]
    assert "split" in t.source


def test_csv_file_with_quotes_and_custom_columns(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text('body,stars\n"great, really great",pos\n"so\nbad",neg\nfine,pos\nawful,neg\nnice,pos\n',
                 encoding="utf-8")
    one_line_error(r"no text column .*columns: body, stars", load_task, str(p))
    t = load_task(str(p), text_column="body", label_column="stars", label_words=["bad", "good"])
    assert t.classes == ["neg", "pos"] and t.label_words == ["bad", "good"] and t.text_field == "Body"
    texts = {ex.text for ex in t.train + t.test}
    assert "great, really great" in texts and "so\nbad" in texts


def test_tsv_file(tmp_path):
    p = write_sv(tmp_path / "d.tsv", ["sentence", "label"], ROWS, "\t")
    t = load_task(str(p))
    assert t.text_field == "Sentence" and len(t.train) + len(t.test) == 10


def test_numeric_labels_need_label_words(tmp_path):
    rows = [{"text": t, "label": int(y == "pos")} for t, y in ROWS]
    p = write_jsonl(tmp_path / "n.jsonl", rows)
    one_line_error("--label-words", load_task, str(p))
    t = load_task(str(p), label_words=["negative", "positive"])
    assert t.classes == ["0", "1"] and t.label_index("1") == 1 and t.label_index("positive") == 1
    one_line_error("one word per class", load_task, str(p), label_words=["a", "b", "c"])
    one_line_error("distinct", load_task, str(p), label_words=["a", "a"])


def test_folder_with_train_test_dev(tmp_path):
    write_sv(tmp_path / "train.csv", ["text", "label"], ROWS, ",")
    write_jsonl(tmp_path / "test.jsonl", [{"text": "wow", "label": "pos"}, {"text": "meh", "label": "neg"}])
    write_jsonl(tmp_path / "validation.jsonl", [{"text": "ok", "label": "pos"}])
    t = load_task(str(tmp_path), template="Review: {text} Sentiment:")
    assert (len(t.train), len(t.test), len(t.dev)) == (10, 2, 1)
    assert t.format(Example("wow", "pos")) == "Review: wow Sentiment:"
    (tmp_path / "train.jsonl").write_text('{"text": "x", "label": "pos"}\n')
    one_line_error("several train files", load_task, str(tmp_path))


def test_sentence_pair(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": ["entailment", "contradiction"][i % 2]}
            for i in range(10)]
    p = write_jsonl(tmp_path / "nli.jsonl", rows)
    t = load_task(str(p))
    assert t.template == "Premise : {text} Hypothesis : {text_b} Label :"
    ex = t.train[0]
    assert ex.text_b is not None and t.format(ex) == f"Premise : {ex.text} Hypothesis : {ex.text_b} Label :"
    one_line_error(r"\{text_b\}", load_task, str(p), template="Premise : {text} Label :")
    q = write_jsonl(tmp_path / "qa.jsonl", [{"q": f"q{i}", "a": f"a{i}", "y": ["yes", "no"][i % 2]} for i in range(6)])
    t2 = load_task(str(q), text_column="q", text_b_column="a", label_column="y")
    assert t2.template == "Q : {text} A : {text_b} Label :"


# ---- validation -------------------------------------------------------------------------------------------

def test_file_not_found(tmp_path):
    msg = one_line_error("not found", load_task, str(tmp_path / "nope.jsonl"))
    assert "built-in" in msg


def test_empty_files(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    one_line_error("is empty", load_task, str(tmp_path / "e.jsonl"))
    (tmp_path / "h.csv").write_text("text,label\n")
    one_line_error("no examples", load_task, str(tmp_path / "h.csv"))


def test_missing_column_names_existing_ones(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": t, "y": y} for t, y in ROWS])
    msg = one_line_error("no label column", load_task, str(p))
    assert "columns: text, y" in msg and "--label-column" in msg
    msg = one_line_error("no column 'lbl'", load_task, str(p), label_column="lbl")
    assert "text, y" in msg


def test_unknown_test_label(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t, "label": y} for t, y in ROWS])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "neutral"}])
    msg = one_line_error("unknown label 'neutral'", load_task, str(tmp_path))
    assert "line 2" in msg and "neg, pos" in msg


def test_only_one_class(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": "pos"} for i in range(5)])
    one_line_error("only one class", load_task, str(p))


def test_bad_json_line_number(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": oops}\n')
    one_line_error("line 3 is not valid JSON", load_task, str(p))
    p.write_text('{"text": "a", "label": "x"}\n[1, 2]\n')
    one_line_error("line 2 is not a JSON object", load_task, str(p))


def test_missing_value_and_bad_csv_row(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}, {"text": "c", "label": "y"}])
    one_line_error("line 2 has no 'label' value", load_task, str(p))
    q = tmp_path / "d.csv"
    q.write_text("text,label\na,x\nb,y,extra\n")
    one_line_error("line 3 has more fields", load_task, str(q))


def test_unsupported_extension(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("a\tb\n")
    one_line_error("unsupported file type '.txt'", load_task, str(p))


def test_bad_template_and_sizes(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": t, "label": y} for t, y in ROWS])
    one_line_error("no \\{text\\}", load_task, str(p), template="Label :")
    one_line_error("unknown fields", load_task, str(p), template="{text} {label}")
    one_line_error("--max-train", load_task, str(p), max_train=0)
    assert load_task(str(p), template="{text} It was ").template == "{text} It was"


def test_json_array_file(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": t, "label": y} for t, y in ROWS]))
    assert len(load_task(str(p)).train) == 8


# ---- Task methods -----------------------------------------------------------------------------------------

def make_task(n: int = 50) -> Task:
    train = [Example(f"t{i}", ["a", "b"][i % 2]) for i in range(n)]
    return Task("toy", ["a", "b"], ["A", "B"], "Sentence : {text} Label :", "Sentence", [], train, train[:5], [],
                "memory")


def test_subset_deterministic_and_nested():
    t = make_task()
    s1, s2 = t.subset("train", 10, seed=7), t.subset("train", 10, seed=7)
    assert s1 == s2 and len(s1) == 10
    assert [t.train.index(e) for e in s1] == sorted(t.train.index(e) for e in s1)  # original order
    assert t.subset("train", 10, seed=8) != s1
    assert set(map(id, s1)) <= set(map(id, t.subset("train", 20, seed=7)))
    assert t.subset("train", None, seed=7) == t.train and t.subset("train", 500, seed=7) == t.train
    assert t.subset("dev", 3, seed=0) == []
    with pytest.raises(SoftscopeError):
        t.subset("valid", 3, seed=0)


def test_format_and_label_index():
    t = make_task()
    assert t.format(Example("hello {world}", "a")) == "Sentence : hello {world} Label :"
    assert t.label_index("b") == 1 and t.label_index("A") == 0
    with pytest.raises(SoftscopeError, match="unknown label"):
        t.label_index("c")
    assert t.to_dict()["sizes"] == {"train": 50, "test": 5, "dev": 0}


def test_max_train_max_test_seeded(tmp_path):
    rows = [{"text": f"t{i}", "label": ["x", "y"][i % 2]} for i in range(100)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "test.jsonl", rows[:40])
    a = load_task(str(tmp_path), max_train=10, max_test=5, seed=2)
    b = load_task(str(tmp_path), max_train=10, max_test=5, seed=2)
    assert (len(a.train), len(a.test)) == (10, 5) and a.train == b.train and a.test == b.test


def _no_local_data(monkeypatch, tmp_path):
    """A fresh machine: no SOFTSCOPE_DATA, no ../shared beside the working folder or the source checkout."""
    monkeypatch.delenv("SOFTSCOPE_DATA", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(tasks, "REPO_ROOT", tmp_path / "checkout")


def test_train_on_a_fresh_offline_machine_is_one_line_naming_both_ways(monkeypatch, tmp_path, tiny_model_dir, capsys):
    from conftest import run_cli

    _no_local_data(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub unreachable: the real datasets call fails offline
    out = tmp_path / "o"
    code, stdout, err = run_cli(["train", "--task", "sst2", "--model", str(tiny_model_dir), "--steps", "1",
                                 "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "SOFTSCOPE_DATA" in lines[0] and "sst2/train.jsonl" in lines[0] and "go online" in lines[0]
    assert "unset it" in lines[0] and "stanfordnlp/sst2" in lines[0]
    assert not out.exists()


def test_train_on_a_fresh_machine_loads_sst2_from_a_faked_hub(monkeypatch, tmp_path, tiny_model_dir, capsys):
    from conftest import run_cli

    datasets = pytest.importorskip("datasets")
    _no_local_data(monkeypatch, tmp_path)
    lab = datasets.ClassLabel(names=["negative", "positive"])
    feats = datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"), "label": lab})
    pos, neg = ["the movie was great", "loved this film", "great fun plot"], ["the movie was awful", "hated it", "bad"]
    split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"idx": list(range(2 * n)), "sentence": (pos * 4)[:n] + (neg * 4)[:n], "label": [1] * n + [0] * n},
        features=feats)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or datasets.DatasetDict(
        {"train": split(8), "validation": split(3), "test": split(3)}))
    code, stdout, err = run_cli(["train", "--task", "sst2", "--model", str(tiny_model_dir), "--device", "cpu",
                                 "--tokens", "2", "--steps", "1", "--batch-size", "2", "--eval-examples", "2",
                                 "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert calls == [("stanfordnlp/sst2",)]
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert "hub:stanfordnlp/sst2" in json.dumps(cfg)
