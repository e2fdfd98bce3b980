"""The honest record of test scorings: collected from stored metrics files, worded for the dashboard."""

from __future__ import annotations

import json
import re

from medapp.reporting import scoring_record as record_mod
from tests.app_fixtures import PROJECT_ROOT, shipped_model_dirs

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _metrics(folder, name, dataset, split, sha, auc=0.9):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"model": folder.name, "dataset": dataset, "split": split,
                                           "weights_sha256": sha, "auc": auc}))


def test_collect_scorings_counts_each_model_once_per_test_split(tmp_path):
    _metrics(tmp_path / "a", "metrics.json", "busi", "test", "A", 0.91)
    _metrics(tmp_path / "a", "metrics_busbra_test.json", "busbra", "test", "A")
    _metrics(tmp_path / "a", "metrics_busi_val.json", "busi", "val", "A")  # validation: not a test scoring
    _metrics(tmp_path / "b", "metrics.json", "busi", "test", "B")
    _metrics(tmp_path / "copy_of_a", "metrics.json", "busi", "test", "A")  # same weights elsewhere: once
    found = record_mod.collect_scorings([tmp_path / "a", tmp_path / "b", tmp_path / "copy_of_a"], tmp_path)
    assert list(found) == ["busi", "busbra"]  # the dashboard's order
    assert [e["model"] for e in found["busi"]] == ["a", "b"] and len(found["busbra"]) == 1
    assert found["busi"][0] == {"model": "a", "weights_sha256": "A", "auc": 0.91, "file": "a/metrics.json"}


def test_record_lines_count_models_and_scorings_without_a_file():
    record = {"note": "Select on validation, report test.",
              "scorings": {"busi": [{"model": "m1", "weights_sha256": "A"}, {"model": "m2", "weights_sha256": "B"}],
                           "busbra": [{"model": "m2", "weights_sha256": "B"}]},
              "unfiled": {"busi": [{"what": "a lost run", "auc": 0.944, "source": "README"}]}}
    lines = record_mod.scoring_record_lines(record, weights_sha256="B")
    assert lines[0] == "Select on validation, report test."
    assert lines[1] == ("**BUSI test (Cairo, Egypt)**: scored by 2 models across the project (this model among "
                        "them), and 1 more time without a file: a lost run, AUC 0.944.")
    assert lines[2] == "**BUS-BRA test (Rio de Janeiro, Brazil)**: scored by 1 model across the project (this model " \
                       "among them)."
    assert "this model" not in record_mod.scoring_record_lines(record, weights_sha256="C")[1]
    markdown = record_mod.scoring_record_markdown(record, weights_sha256="B")
    assert markdown.startswith("Select on validation, report test.\n\n- **BUSI test") and markdown.count("\n- ") == 2
    rows = record_mod.scoring_rows(record)
    assert len(rows) == 4 and rows[-1] == {"Test split": "BUSI test (Cairo, Egypt)", "Model": "a lost run",
                                           "AUC": "0.944", "Record": "README"}


def test_no_record_says_the_figures_may_be_optimistic(tmp_path):
    assert record_mod.load_scoring_record(tmp_path) is None
    assert record_mod.scoring_record_lines(None) == [record_mod.NO_RECORD]
    assert record_mod.scoring_record_markdown(None) == record_mod.NO_RECORD
    assert "optimistic" in record_mod.NO_RECORD


def test_shipped_record_matches_the_stored_metrics_files_and_the_readme():
    """test_scorings.json is what bench/scoring_record.py collects from docs/ and models/ today, and the README's
    honest record gives the same counts, so neither the page nor the README drifts from the files."""
    folders = sorted(p for base in ("docs", "models") for p in (PROJECT_ROOT / base).iterdir() if p.is_dir())
    readme = (PROJECT_ROOT / "README.md").read_text()
    honest = readme[readme.find("**Honest record.**"):][:600]
    for model_dir in shipped_model_dirs():
        record = record_mod.load_scoring_record(model_dir)
        if record is None:
            continue
        collected = record_mod.collect_scorings(folders, PROJECT_ROOT)
        assert record["scorings"] == collected
        busi, busbra = len(collected["busi"]), len(collected["busbra"])
        assert re.search(rf"scored by {NUMBER_WORDS[busi]} models", honest), honest
        assert re.search(rf"BUS-BRA's by {NUMBER_WORDS[busbra]}\b", honest), honest
