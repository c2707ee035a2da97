"""Compare (mean ± std over seeds, best candidate, best seed) and the gate verdict."""

from __future__ import annotations

import statistics

import pytest

from components.common.results import CompareSummary, EvaluationResult, GateVerdict, Reference
from components.compare.run import compare, to_markdown, write_html
from components.gate.run import FAILED, PASSED, decision

verdict = GateVerdict.decide


def run(
    name: str, seed: float, accuracy: float, log_loss: float = 0.3, **extra: float
) -> EvaluationResult:
    # Validated from the dict an evaluate task returns, as the compare component does.
    return EvaluationResult.model_validate(
        {
            "name": name,
            "seed": seed,
            "framework": "keras",
            "model_uri": f"/models/{name}-{int(seed)}",
            "metrics": {"accuracy": accuracy, "log_loss": log_loss, **extra},
        }
    )


REFERENCE = Reference(metric="accuracy", value=0.97)
RESULTS = [
    run("cnn-a", 0, 0.90, 0.40),
    run("cnn-a", 1.0, 0.99, 0.20),  # kfp.local hands Collected ints over as floats
    run("cnn-b", 0, 0.95, 0.30),
    run("cnn-b", 1, 0.96, 0.35),
]


def test_mean_and_sample_std_per_candidate():
    summary = compare(RESULTS, "accuracy", 0.9)
    rows = {row.name: row for row in summary.rows}
    assert rows["cnn-a"].metrics["accuracy"].mean == pytest.approx(0.945)
    assert rows["cnn-a"].metrics["accuracy"].std == pytest.approx(statistics.stdev([0.90, 0.99]))
    # two values 0.01 apart: sample std = 0.01 / sqrt(2)
    assert rows["cnn-b"].metrics["accuracy"].std == pytest.approx(0.01 / 2**0.5)
    assert rows["cnn-b"].metrics["log_loss"].mean == pytest.approx(0.325)
    assert rows["cnn-a"].seeds == 2 and rows["cnn-a"].seed_list == [0, 1]


def test_mean_picks_the_candidate_and_its_best_seed_is_the_model():
    # cnn-a has the single best run (0.99) but cnn-b the better mean (0.955 > 0.945)
    summary = compare(RESULTS, "accuracy", 0.9)
    assert [row.name for row in summary.rows] == ["cnn-b", "cnn-a"]
    assert [row.rank for row in summary.rows] == [1, 2]
    best = summary.best
    assert (best.name, best.seed, best.value) == ("cnn-b", 1, 0.96)
    assert best.model_uri == "/models/cnn-b-1"
    assert best.metrics["accuracy"] == 0.96
    assert isinstance(best.seed, int)


def test_lower_is_better_metric_ranks_ascending():
    summary = compare(RESULTS, "log_loss", 0.5)
    assert summary.rows[0].name == "cnn-a"  # mean 0.30 < 0.325
    assert (summary.best.seed, summary.best.value) == (1, 0.20)
    assert summary.higher_is_better is False
    assert summary.gate.passed


def test_gate_pass():
    gate = compare(RESULTS, "accuracy", 0.95).gate
    assert gate.passed and gate.missed_by == 0.0 and gate.min == 0.95
    assert gate.message == "gate passed: cnn-b (seed 1) accuracy 0.9600 >= 0.9500"


def test_gate_fail_says_by_how_much():
    gate = compare(RESULTS, "accuracy", 0.975).gate
    assert not gate.passed
    assert gate.missed_by == pytest.approx(0.015)
    assert "accuracy 0.9600, below the minimum 0.9750 by 0.0150" in gate.message
    assert "cnn-b (seed 1)" in gate.message and "nothing is registered" in gate.message


def test_gate_for_lower_is_better_metric_is_a_maximum():
    passed = verdict("log_loss", 0.18, 0.2, "m", 0)
    assert passed.passed and "0.1800 <= 0.2000" in passed.message
    failed = verdict("ece", 0.25, 0.2, "m", 3)
    assert not failed.passed
    assert failed.missed_by == pytest.approx(0.05)
    assert "ece 0.2500, above the maximum 0.2000 by 0.0500" in failed.message


def test_gate_exactly_at_the_minimum_passes():
    assert verdict("accuracy", 0.9, 0.9, "m", 0).passed


def test_candidate_ties_break_by_name():
    summary = compare([run("zeta", 0, 0.9), run("alpha", 0, 0.9)], "accuracy", 0.5)
    assert summary.best.name == "alpha"


def test_markdown_table():
    summary = compare(RESULTS + [run("solo", 0, 0.5)], "accuracy", 0.9)
    markdown = to_markdown(summary)
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| rank"))
    assert "accuracy" in header and "log_loss ↓" in header
    row_b = next(line for line in lines if "cnn-b" in line and line.startswith("|"))
    assert f"0.9550 ± {0.01 / 2**0.5:.4f}" in row_b and "**cnn-b**" in row_b
    row_solo = next(line for line in lines if "solo" in line and line.startswith("|"))
    assert "0.5000" in row_solo and "±" not in row_solo  # one seed: no spread to show
    assert summary.gate.message in markdown
    assert "sample standard deviation" in markdown


def test_html_report(tmp_path):
    summary = compare(RESULTS, "accuracy", 0.975, REFERENCE)
    page = write_html(summary, tmp_path / "compare.html").read_text()
    assert "<b>cnn-b</b>" in page and "Every run" in page
    assert "class='bad'" in page and "by 0.0150" in page
    assert "Reference accuracy: 0.9700; best run 0.9600 (-0.0100)" in page
    # a bar per candidate with its std whisker, and links to each run's reports by their
    # names in the results folder
    assert page.count("<div class='bar'>") == len({r.name for r in RESULTS})
    assert "class='err'" in page
    for r in RESULTS:
        assert f'href="evaluation-{r.name}-seed{r.seed}.html"' in page
        assert f'href="curves-{r.name}-seed{r.seed}.html"' in page
    assert "td{white-space:nowrap}" in page  # "mean ± std" cells stay on one line


def test_every_scalar_is_summarised_and_weighted_f1_can_gate():
    results = [
        run("a", 0, 0.9, weighted_f1=0.8, ece=0.05),
        run("a", 1, 0.8, weighted_f1=0.7, ece=0.07),
    ]
    summary = compare(results, "weighted_f1", 0.7)
    assert summary.rows[0].metrics["weighted_f1"].mean == pytest.approx(0.75)
    assert summary.rows[0].metrics["ece"].mean == pytest.approx(0.06)


def test_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="no candidate results"):
        compare([], "accuracy", 0.5)
    with pytest.raises(ValueError, match="gate metric 'top5_accuracy' was not computed.*accuracy"):
        compare(RESULTS, "top5_accuracy", 0.5)


def test_a_metric_left_out_for_the_class_count_says_why():
    with pytest.raises(ValueError) as caught:
        compare(RESULTS, "top5_accuracy", 0.5)
    message = str(caught.value)
    assert "(it needs at least 11 classes)" in message
    offered = message.split("one of: ")[1].split(", ")
    assert "top5_accuracy" not in offered and "accuracy" in offered


def test_cli_summary_still_formats_the_new_shape():
    from pipelines.summary import format_result

    summary = compare(RESULTS, "accuracy", 0.975, REFERENCE)
    text = format_result(
        {"experiment": "x", "target": "local", "status": "SUCCEEDED", "summary": summary}
    )
    assert "cnn-b" in text and "0.9550 ± 0.0071" in text and "by 0.0150" in text


def test_the_summary_survives_the_trip_through_kfp():
    # KFP carries the summary as a Struct: ints come back as floats, and None cannot travel.
    summary = compare(RESULTS, "accuracy", 0.9)
    output = summary.to_output()
    assert "reference" not in output
    output["best"]["seed"] = float(output["best"]["seed"])
    output["rows"][0]["seeds"] = float(output["rows"][0]["seeds"])
    back = CompareSummary.model_validate({**output, "reference": {}})
    assert back == summary and isinstance(back.best.seed, int)


def test_the_gate_step_follows_the_verdict_both_ways():
    assert decision(compare(RESULTS, "accuracy", 0.95)) == PASSED
    assert decision(compare(RESULTS, "accuracy", 0.975)) == FAILED
    # lower is better: the threshold is a maximum
    assert decision(compare(RESULTS, "log_loss", 0.25)) == PASSED
    assert decision(compare(RESULTS, "log_loss", 0.15)) == FAILED


def test_every_experiments_reference_is_one_compare_reads():
    # The pipeline hands compare the experiment's reference as a dict; it must validate.
    from pipelines.config import list_experiments, load_experiment

    for name in list_experiments():
        reference = load_experiment(name).reference
        if reference is not None:
            sent = reference.model_dump(mode="json", exclude_none=True)
            assert Reference.model_validate(sent).to_output() == sent
