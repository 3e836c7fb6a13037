"""The report: tables with known numbers from fixture results, the figures, the HTML page, the CLI."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bertcompress.report.build import make_report
from bertcompress.report.collect import load_runs
from bertcompress.report.tables import pareto_front
from tests.conftest import ROOT
from tests.report_fixtures import write_sweep


@pytest.fixture
def report(tmp_path):
    return make_report(write_sweep(tmp_path / "sweep"))


def test_tables_average_seeds_and_flag_the_floor(report):
    summary = pd.read_csv(report["dir"] / "summary.csv")
    row = summary.set_index("model")
    teacher = row.loc["t"]
    assert teacher["table"] == "baselines" and teacher["n_seeds"] == 2
    assert teacher["macro_f1"] == pytest.approx(51.0) and teacher["macro_f1_std"] == pytest.approx(1.4142, abs=1e-3)
    assert teacher["accuracy"] == pytest.approx(56.0)
    cnn = row.loc["t→cnn"]
    assert cnn["table"] == "distillation" and cnn["macro_f1"] == pytest.approx(48.0)
    assert cnn["speedup"] == pytest.approx(20.0) and cnn["compression_ratio"] == pytest.approx(50.0)
    assert row.loc["t→cnn (no KD)", "macro_f1"] == pytest.approx(45.0)
    assert row.loc["t+quant", "table"] == "pruning_quantization"
    assert row.loc["t→cnn+prune_quant", "table"] == "combinations"
    # the floor: tfidf_lr from the runs' baseline blocks (48.0); rows at or below it are flagged
    assert row.loc["tfidf_lr", "macro_f1"] == pytest.approx(48.0) and row.loc["tfidf_lr", "table"] == "baselines"
    flagged = set(summary.loc[summary["below_floor"], "model"])
    assert flagged == {"t→cnn", "t→cnn (no KD)"}
    # Pareto front over (macro-F1 up, latency down)
    assert set(summary.loc[summary["pareto"], "model"]) == {"t", "t+quant", "t→cnn+prune_quant"}
    md = (report["dir"] / "summary.md").read_text()
    for title in ("Table 4", "Table 5", "Table 6", "Table 7", "Pareto front", "Failed jobs", "RuntimeError: boom"):
        assert title in md
    assert "51.00 ± 1.41" in md and "⚠ below floor" in md
    assert "teacher fine-tuned in 5 run(s), reused in 2" in md


def test_every_figure_and_a_self_contained_page(report):
    out = report["dir"]
    for name in ("sizes", "accuracy_f1", "speedup", "compression_ratio", "pareto", "radar_baselines",
                 "radar_distillation"):  # fmt: skip
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
    # one configuration in Tables 6 and 7 each: a radar compares, so none is drawn
    assert not (out / "radar_pruning_quantization.png").exists() and not (out / "radar_combinations.png").exists()
    # every file of the report has the mode an ordinary write gives it (the PNGs as the HTML)
    assert len({p.stat().st_mode & 0o777 for p in report["files"]}) == 1
    assert len(list((out / "confusion").glob("*.png"))) == 6  # one per finished neural configuration
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len([f for f in report["files"] if f.suffix == ".png"])
    assert 'src="http' not in page and "Table 7" in page
    # the page carries what summary.md carries: the Pareto front and the cache hits
    assert "Pareto front (macro-F1 vs latency p50)</h2>" in page and "t→cnn+prune_quant" in page
    assert "teacher fine-tuned in 5 run(s), reused in 2" in page
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["status"] == "failed").sum() == 1


def test_pareto_front_by_hand():
    f1 = pd.Series([50.0, 49.0, 48.0, 47.0, None])
    latency = pd.Series([20.0, 10.0, 12.0, 1.0, 0.5])
    assert pareto_front(f1, latency).tolist() == [True, True, False, True, False]


def test_load_runs_errors_name_the_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dir"):
        load_runs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_runs(tmp_path)


def test_report_cli(tmp_path):
    root = write_sweep(tmp_path / "sweep")
    out = subprocess.run([sys.executable, str(ROOT / "report.py"), str(root), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "configurations" in out.stdout and (tmp_path / "r" / "index.html").is_file()
    bad = subprocess.run(
        [sys.executable, str(ROOT / "report.py"), str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no such dir" in bad.stderr


@pytest.mark.slow
def test_compare_runs_notebook_executes_on_a_fixture_sweep(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    result = make_report(write_sweep(tmp_path / "sweep"))
    monkeypatch.setenv("BERTCOMPRESS_REPORT_DIR", str(result["dir"]))
    monkeypatch.setenv("BERTCOMPRESS_NOTEBOOK_OUT", str(tmp_path / "nb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    nb = nbformat.read(ROOT / "notebooks" / "compare_runs.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    for name in ("accuracy_f1", "speedup", "compression_ratio", "pareto"):
        assert (tmp_path / "nb" / f"{name}.png").stat().st_size > 5000
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots are shown inline


@pytest.mark.slow  # a subprocess or notebook run; `make test-full`
def test_the_notebooks_without_a_report_or_run_say_how_to_make_one(tmp_path, monkeypatch):
    """``jupyter execute`` (the README's command) on the notebooks with no report or run dir: each stops in
    its first cells with a message that names the command that makes one."""
    import shutil

    jupyter = shutil.which("jupyter")
    if jupyter is None:
        pytest.skip("jupyter (nbclient's `jupyter execute`) is not installed")
    monkeypatch.delenv("BERTCOMPRESS_REPORT_DIR", raising=False)
    monkeypatch.setenv("BERTCOMPRESS_RUN_DIR", str(tmp_path / "no_run"))
    for name, hint in (("compare_runs", "python report.py logs/"), ("inspect_run", "python train.py experiment=smoke")):
        copy = tmp_path / f"{name}.ipynb"
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", copy)
        proc = subprocess.run([jupyter, "execute", str(copy)], capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and "FileNotFoundError" in proc.stderr and hint in proc.stderr, proc.stderr[-2000:]


def test_runs_benchmarked_on_a_busy_machine_are_flagged(tmp_path):
    import json

    from bertcompress.report.tables import aggregate, display_table

    root = write_sweep(tmp_path / "sweep")
    path = root / "5" / "results.json"  # t+quant
    r = json.loads(path.read_text())
    r["benchmark"] = {"machine": {"load_avg_1min": 3.4, "cores": 2, "busy": True}}
    path.write_text(json.dumps(r))
    runs = load_runs(root)
    assert runs.loc[runs["model"] == "t+quant", "busy"].tolist() == [True]
    assert not runs.loc[runs["model"] == "t→cnn+prune_quant", "busy"].any()
    table = display_table(aggregate(runs), "pruning_quantization")
    assert table["model"].tolist() == ["t+quant (busy machine)"]


def test_pie_shows_the_models_before_compression_and_radar_the_best_row_per_model():
    from bertcompress.report.figures import pie_rows, radar_rows

    agg = pd.DataFrame(
        {
            "model": ["t", "t+quant", "t+prune", "t→cnn", "t→cnn+quant", "t→cnn+prune", "tfidf_lr"],
            "compression": ["none", "quant", "prune", "none", "quant", "prune", "none"],
            "size_mb": [400.0, 100.0, 400.0, 8.0, 4.0, 8.0, 5.0],
            "macro_f1": [50.0, 49.0, 49.5, 48.0, 48.5, 47.0, 52.0],
        }
    )
    assert list(pie_rows(agg)["model"]) == ["t", "t→cnn", "tfidf_lr"]  # largest first, uncompressed only
    assert list(pie_rows(agg[agg["compression"] != "none"].assign(compression="quant"))["model"]) == [
        "t+prune",
        "t+quant",
        "t→cnn+prune",
        "t→cnn+quant",
    ]  # fmt: skip  (fewer than two uncompressed rows: every row)
    assert list(radar_rows(agg)["model"]) == ["tfidf_lr", "t", "t→cnn+quant"]  # one per model, best F1 first
    teacher_only = agg[agg["model"].str.startswith("t+")]
    assert list(radar_rows(teacher_only)["model"]) == ["t+prune", "t+quant"]  # one model: every row
    assert len(radar_rows(pd.concat([agg] * 3, ignore_index=True).assign(model=lambda d: d.index.astype(str)), 4)) == 4


def _unbenchmarked(tmp_path):
    """Two finished jobs run with benchmark.enabled=false: no latency, size, speedup or throughput."""
    import json

    from tests.report_fixtures import result

    root = tmp_path / "nobench"
    for seed in (1, 2):
        r = result("t", "cnn", "none", seed, 52.0, 47.0 + seed, 1.0, 8.0)
        for key in ("speedup", "compression_ratio", "size_mb", "latency_p50_ms", "latency_p95_ms", "throughput_seq_s"):
            r.pop(key)
        (root / str(seed)).mkdir(parents=True)
        (root / str(seed) / "results.json").write_text(json.dumps(r))
    return root


def test_report_of_runs_without_a_benchmark_says_which_figures_it_could_not_draw(tmp_path):
    out = make_report(_unbenchmarked(tmp_path))
    assert (out["dir"] / "accuracy_f1.png").is_file() and not (out["dir"] / "pareto.png").exists()
    assert set(out["skipped_figures"]) >= {"Pareto front", "Speedup", "Model size on disk"}
    assert "benchmark.enabled=false" in out["skipped_figures"]["Pareto front"]
    page = (out["dir"] / "index.html").read_text()
    assert "Figures not drawn" in page and "benchmark.enabled=false" in page


def test_report_of_a_sweep_where_every_job_failed_lists_them_and_exits_0(tmp_path):
    import json

    root = tmp_path / "failed"
    for k in range(2):
        (root / str(k)).mkdir(parents=True)
        failed = {"status": "failed", "run_name": f"job{k}", "error": "ModelUnavailableError: offline", "config": {}}
        (root / str(k) / "results.json").write_text(json.dumps(failed))
    done = subprocess.run(
        [sys.executable, str(ROOT / "report.py"), str(root)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    page = (root / "report" / "index.html").read_text()
    assert "Failed jobs" in page and page.count("ModelUnavailableError: offline") == 2
    assert "no job finished" in page
    assert "Failed jobs" in (root / "report" / "summary.md").read_text()


def test_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from bertcompress.report import build

    root = write_sweep(tmp_path / "sweep")
    first = make_report(root)
    before = {p.name: p.read_bytes() for p in first["dir"].glob("*.*")}

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # interrupted while writing the page

    monkeypatch.setattr(build, "_html", boom)
    with pytest.raises(KeyboardInterrupt):
        make_report(root)
    assert {p.name: p.read_bytes() for p in first["dir"].glob("*.*")} == before  # the old report, untouched
    assert not [p for p in first["dir"].parent.iterdir() if p.name.startswith(".report")]


def test_only_results_json_invalid_says_so(tmp_path):
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "results.json").write_text('{"status": "fin')
    with pytest.raises(FileNotFoundError, match=r"not valid JSON: .*results\.json"):
        load_runs(tmp_path)


@pytest.mark.parametrize("other", ['["a", "list"]', '{"runs": [1, 2]}', '{"status": "finished", "final_test": "no"}'])
def test_a_results_json_of_another_schema_is_skipped_and_named(other, tmp_path, caplog):
    root = write_sweep(tmp_path / "sweep")
    n = len(load_runs(root))
    (root / "foreign").mkdir()
    (root / "foreign" / "results.json").write_text(other)
    runs = load_runs(root)
    assert len(runs) == n and runs.attrs["skipped_files"][0].startswith(str(root / "foreign" / "results.json"))
    assert f"Skipping {root / 'foreign' / 'results.json'}: not of this results schema" in caplog.text
    page = make_report(root)["dir"] / "index.html"
    assert "results.json files skipped" in page.read_text() and "foreign" in page.read_text()


def test_summary_has_out_of_domain_columns_with_std_and_retention(tmp_path):
    import json

    from tests.report_fixtures import result

    for seed, (f1, t1, floor) in {1: (40.0, 50.0, 30.0), 2: (44.0, 50.0, 30.0)}.items():
        r = result("me5", "cnn", "none", seed, 55.0, 50.0, 1.0, 5.0, baseline_f1=45.0)
        block = {"macro_f1": f1, "teacher": {"macro_f1": t1}, "baseline": {"macro_f1": floor}, "retention": f1 / t1}
        r["eval_sets"] = {"banemo_dev": block}
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(r))
    summary = pd.read_csv(make_report(tmp_path)["dir"] / "summary.csv").set_index("model")
    cnn = summary.loc[[m for m in summary.index if "cnn" in m][0]]
    assert cnn["banemo_dev_macro_f1"] == pytest.approx(42.0) and cnn["banemo_dev_retention"] == pytest.approx(0.84)
    assert cnn["banemo_dev_macro_f1_std"] == pytest.approx(2**0.5 * 2)
    assert summary.loc["tfidf_lr", "banemo_dev_macro_f1"] == pytest.approx(30.0)
    assert summary.loc["tfidf_lr", "banemo_dev_retention"] == pytest.approx(0.6)
    assert "banemo_dev macro-F1 (retention %)" in (make_report(tmp_path)["dir"] / "summary.md").read_text()


def test_table_4_has_the_teacher_of_student_jobs_with_its_confusion_matrix_in_table_order(tmp_path):
    """A sweep of students only: Table 4 shows their fine-tuned teacher (once per seed, however many jobs
    share it), its confusion matrix is drawn, the matrices follow the tables' order, and the counts are of jobs."""
    import json

    from bertcompress.report.tables import aggregate, display_table, summary_markdown
    from tests.report_fixtures import result

    root = tmp_path / "students"
    for k, (student, compression) in enumerate([("cnn", "none"), ("cnn", "quant"), ("bilstm", "none")]):
        r = result("t", student, compression, 1, 52.0, 47.0 + k, 1.0, 8.0, baseline_f1=45.0)
        r["benchmark"] = {"reference": {"size_mb": 400.0, "latency_ms": {"p50": 20.0, "p95": 24.0}}}
        (root / str(k)).mkdir(parents=True)
        (root / str(k) / "results.json").write_text(json.dumps(r))
    runs = load_runs(root)
    assert runs.attrs["jobs"] == 3 and len(runs) == 5  # + one teacher row and one floor row, not one per job
    agg = aggregate(runs)
    table4 = display_table(agg, "baselines")
    assert table4["model"].tolist() == ["t", "tfidf_lr"]
    teacher = agg.set_index("model").loc["t"]
    assert teacher["macro_f1"] == 50.0 and teacher["size_mb"] == 400.0 and teacher["speedup"] == 1.0
    md = summary_markdown(agg, runs)
    assert md.count("3 finished jobs, 0 failed") == 1
    assert "Table 6" not in md and "Table 7" in md  # no teacher compressed alone: that table is left out
    out = make_report(root)
    pngs = sorted(p.name for p in (out["dir"] / "confusion").glob("*.png"))
    assert pngs[0] == "01_t.png" and len(pngs) == len(agg)
    order = [p.split("_", 1)[1][:-4] for p in pngs]
    assert order == [m.replace("→", "-to-") for m in agg["model"]]
    assert "Model size on disk" not in out["skipped_figures"]


def test_labels_of_configurations_name_the_setting_that_differs(tmp_path):
    import json

    from bertcompress.report.tables import aggregate
    from tests.report_fixtures import result

    root = tmp_path / "aug"
    for k, aug in enumerate(["tang2019", "tang2019_unlabeled_bn"]):
        r = result("t", "cnn", "none", 1, 52.0, 47.0 + k, 1.0, 8.0)
        r["config"]["augment"] = {"name": aug, "enabled": True, "generators": {"mask": {"p": 0.1 * (k + 1)}}}
        (root / str(k)).mkdir(parents=True)
        (root / str(k) / "results.json").write_text(json.dumps(r))
    labels = set(aggregate(load_runs(root))["model"])
    assert labels == {"t", "t→cnn [augment=tang2019]", "t→cnn [augment=tang2019_unlabeled_bn]"}


def test_old_results_with_fractional_validation_figures_are_converted_with_a_note(tmp_path):
    import json

    from bertcompress.report.tables import aggregate, summary_markdown
    from tests.report_fixtures import result

    root = tmp_path / "old"
    old, new = result("t", "cnn", "none", 1, 52.0, 47.0, 1.0, 8.0), result("t", "cnn", "none", 2, 52.0, 48.0, 1.0, 8.0)
    old["student"]["best_val_macro_f1"] = 0.4812  # written before metric_unit: a fraction
    new["student"].update(best_val_macro_f1=49.5, metric_unit="percent")
    new["metric_unit"] = "percent"
    for k, r in enumerate([old, new]):
        (root / str(k)).mkdir(parents=True)
        (root / str(k) / "results.json").write_text(json.dumps(r))
    runs = load_runs(root)
    assert sorted(runs.loc[~runs["derived"], "best_val_macro_f1"]) == [pytest.approx(48.12), 49.5]
    assert runs.attrs["converted_units"] == [str(root / "0")]
    assert "1 run(s) were written when validation figures (best_val_macro_f1) were fractions" in summary_markdown(
        aggregate(runs), runs
    )


def test_a_compression_search_becomes_a_table_with_its_winner(tmp_path):
    import json

    from tests.report_fixtures import result

    r = result("me5", "none", "auto", 1, 55.0, 50.0, 5.0, 118.0)
    r["compression"] = {"quantization": {"method": "auto", "winner": "b", "search": [
        {"candidate": "fp32", "val_macro_f1": 55.0, "status": "reference", "p50_ms": 20.0, "throughput_seq_s": 50.0,
         "size_mb": 470.0, "speedup": 1.0, "timing_round": 1, "execution": {"backend": "torch", "precision": "float32"}},
        {"candidate": "a", "val_macro_f1": 53.0, "delta_val_macro_f1": -2.0, "within_tolerance": False,
         "status": "built", "p50_ms": 4.0, "throughput_seq_s": 90.0, "size_mb": 118.0, "speedup": 5.0, "timing_round": 1},
        {"candidate": "b", "val_macro_f1": 54.9, "delta_val_macro_f1": -0.1, "within_tolerance": True,
         "status": "winner", "p50_ms": 5.0, "throughput_seq_s": 80.0, "size_mb": 118.0, "speedup": 4.0, "timing_round": 1},
        {"candidate": "c", "settings": {"backend": "openvino"}, "status": "skipped: not installed"},
    ]}}  # fmt: skip
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(r))
    md = (make_report(tmp_path)["dir"] / "summary.md").read_text()
    section = md.split("## Compression search (`compression=auto`): me5+auto")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0].strip("| ") for line in rows] == ["fp32", "a", "b", "c"]
    assert "| 54.90 | -0.10 | yes | 5.00 | 80.0 | 4.00 | 1 | 118.0 |" in rows[2] and rows[2].endswith("| winner |")
    assert "skipped: not installed" in rows[3] and "torch/float32" in rows[0]


def test_runs_that_differ_only_in_compression_seed_are_one_row_with_its_std(tmp_path):
    import json

    from tests.report_fixtures import result

    for seed, f1 in {1: 50.0, 2: 52.0, 3: 51.0}.items():
        r = result("me5", "none", "prune_structured_kd", 42, 55.0, f1, 10.0, 400.0)
        r["config"]["compression"]["seed"] = seed
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(r))
    row = pd.read_csv(make_report(tmp_path)["dir"] / "summary.csv").set_index("model").loc["me5+prune_structured_kd"]
    assert row["n_seeds"] == 3 and row["macro_f1"] == pytest.approx(51.0) and row["macro_f1_std"] == pytest.approx(1.0)
