"""The champion of a registered model: which version is used, and the decision that moves it
(the challenger is scored against the champion on the run's test split)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_evaluate_run import png, write_dataset

from components.models.prediction import SplitPredictions
from components.register.champion import (
    AliasError,
    champion_version,
    compare,
    decision_lines,
    set_alias,
)
from components.register.run import champion_decision, register_local
from components.spec.champion import ChampionPolicy

CLASSES = ["red", "green", "blue"]
COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}
NAME = "colours"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """12 images of each solid colour, each a little darker than the last."""
    examples = [
        (f"{name}/{i}", label, png(tuple(max(0, c - 4 * i) for c in COLOURS[name])))
        for label, name in enumerate(CLASSES)
        for i in range(12)
    ]
    return write_dataset(tmp_path_factory.mktemp("split") / "dataset", CLASSES, examples)


def colour_model(folder, writer, order=(0, 1, 2)):
    """The certain colour model; `order` permutes its head, (0, 2, 1) calls green blue and
    blue green."""
    writer(folder, CLASSES)
    if order != (0, 1, 2):
        import keras

        path = folder / "keras" / "model.keras"
        model = keras.models.load_model(path)
        model.get_layer("probabilities").set_weights(
            [20 * np.eye(3, dtype=np.float32)[:, list(order)], np.zeros(3, dtype=np.float32)]
        )
        model.save(path)
    return folder


def register(model, root, split, **policy):
    return register_local(
        model, root, NAME, {}, dataset_dir=split, champion=ChampionPolicy(**policy)
    )


def test_a_worse_challenger_is_registered_not_promoted_and_a_better_one_is(
    tmp_path, split, colour_model_writer
):
    root = tmp_path / "registry"
    first = register(colour_model(tmp_path / "good", colour_model_writer), root, split)
    decided = champion_decision(first)
    assert decided is not None and decided.promoted
    assert decided.verdict == f"promoted: first version of '{NAME}': no champion to compare with"
    assert champion_version(root / NAME) == root / NAME / "v1"

    worse = colour_model(tmp_path / "worse", colour_model_writer, order=(0, 2, 1))
    second = register(worse, root, split)
    decided = champion_decision(second)
    assert second.version == "v2" and decided is not None and not decided.promoted
    assert decided.verdict.startswith(
        "not promoted: accuracy 33.33% vs the champion v1's 100.00% (-66.7 points, 95% interval ["
    )
    assert "it may be worse by more than the 1.0-point margin" in decided.reason
    assert decided.reason.endswith("the champion stays v1")
    accuracy = decided.checks[0]
    assert accuracy.check == "accuracy" and not accuracy.passed
    assert accuracy.low <= accuracy.difference <= accuracy.high < -0.01
    assert {c.check for c in decided.checks if not c.passed} >= {
        "accuracy",
        "recall green",
        "recall blue",
    }
    assert decided.discordant == [24, 0] and decided.test_images == 36
    assert decided.mcnemar_p == pytest.approx(2 * 0.5**24)
    # registered, but the champion did not move; the record says so
    assert champion_version(root / NAME) == root / NAME / "v1"
    stored = json.loads((root / NAME / "v2" / "registration.json").read_text())
    assert stored["details"]["champion"]["promoted"] is False

    third = register(colour_model(tmp_path / "again", colour_model_writer), root, split)
    decided = champion_decision(third)
    assert decided is not None and decided.promoted and decided.champion == "v1"
    assert decided.reason == (
        "accuracy 100.00% vs the champion v1's 100.00% (+0.0 points, 95% interval "
        "[+0.0, +0.0]): not worse than the champion by more than the 1.0-point margin"
    )
    assert champion_version(root / NAME) == root / NAME / "v3"
    lines = decision_lines(decided)
    assert lines[0].split() == ["check", "champion", "challenger", "difference", "interval"]
    assert lines[-1] == decided.verdict


def test_registering_the_same_model_again_leaves_the_champion(tmp_path, split, colour_model_writer):
    root = tmp_path / "registry"
    good = colour_model(tmp_path / "good", colour_model_writer)
    register(good, root, split)
    register(colour_model(tmp_path / "other", colour_model_writer), root, split)
    assert champion_version(root / NAME).name == "v2"
    again = register(good, root, split)
    assert again.existing and again.version == "v1"
    assert champion_version(root / NAME).name == "v2"


def test_a_class_change_is_promoted_and_says_the_two_cannot_be_compared(
    tmp_path, split, colour_model_writer, model_card
):
    root = tmp_path / "registry"
    register(colour_model(tmp_path / "good", colour_model_writer), root, split)
    # the champion predicts other classes (a registry that allowed the change)
    card = root / NAME / "v1" / "model" / "model_card.json"
    data = json.loads(card.read_text())
    card.write_text(json.dumps({**data, "class_names": ["cyan", "magenta", "yellow"]}))
    (root / NAME / "v1" / "model_card.json").write_text(card.read_text())
    record = register_local(
        colour_model(tmp_path / "next", colour_model_writer),
        root,
        NAME,
        {},
        dataset_dir=split,
        allow_class_change=True,
    )
    decided = champion_decision(record)
    assert decided is not None and decided.promoted and not decided.checks
    assert decided.reason.startswith("the classes changed (register.allow_class_change)")
    assert champion_version(root / NAME).name == "v2"


def test_with_the_comparison_off_every_version_is_promoted(tmp_path, split, colour_model_writer):
    root = tmp_path / "registry"
    register(colour_model(tmp_path / "good", colour_model_writer), root, split)
    worse = colour_model(tmp_path / "worse", colour_model_writer, order=(0, 2, 1))
    decided = champion_decision(register(worse, root, split, enabled=False))
    assert decided is not None and decided.promoted
    assert decided.reason == "gate.champion.enabled is false: every registered version is promoted"
    assert champion_version(root / NAME).name == "v2"


def test_an_alias_to_a_missing_version_is_an_error_that_says_what_to_do(tmp_path):
    root = tmp_path / NAME
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "registration.json").write_text("{}")
    set_alias(root, "champion", "v7")
    with pytest.raises(
        AliasError, match=r"names champion 'v7', which is not a version of colours \(v1\)"
    ):
        champion_version(root)
    assert not list(root.glob(".*partial"))


# --- the decision on predictions -------------------------------------------------------------


def predictions(labels, predicted, confidence=0.9, classes=2):
    """Probabilities that put `confidence` on `predicted` and the rest evenly elsewhere."""
    n = len(labels)
    probabilities = np.full((n, classes), (1 - confidence) / (classes - 1), dtype=np.float32)
    probabilities[np.arange(n), predicted] = confidence
    keys = np.asarray([f"k{i}" for i in range(n)])
    return SplitPredictions(keys, np.asarray(labels), probabilities)


def test_a_better_challenger_has_an_interval_above_zero_and_a_small_mcnemar_p():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 1000)
    champion = labels.copy()
    champion[:100] = 1 - labels[:100]  # 900 right
    challenger = champion.copy()
    challenger[:30] = labels[:30]  # the same 900 and 30 more
    decided = compare(
        predictions(labels, champion),
        predictions(labels, challenger),
        ["a", "b"],
        ChampionPolicy(),
        "v4",
    )
    accuracy = decided.checks[0]
    assert decided.promoted and accuracy.difference == pytest.approx(0.03)
    assert decided.reason.endswith("better than the champion beyond the test split's noise")
    assert 0 < accuracy.low < 0.03 < accuracy.high
    assert decided.discordant == [0, 30] and decided.mcnemar_p < 1e-8


def test_a_challenger_within_the_margin_is_promoted_and_one_without_margin_is_not():
    labels = np.zeros(10_000, dtype=int)
    labels[5000:] = 1
    champion = labels.copy()
    challenger = labels.copy()
    challenger[:30] = 1  # 0.3 points worse: inside a 1-point margin, not inside none
    two = (predictions(labels, champion), predictions(labels, challenger))
    assert compare(*two, ["a", "b"], ChampionPolicy(), "v1").promoted
    strict = compare(*two, ["a", "b"], ChampionPolicy(margin=0.0), "v1")
    assert not strict.promoted
    assert "may be worse by more than the 0.0-point margin" in strict.reason


def test_a_class_whose_recall_drops_past_the_tolerance_blocks_the_promotion():
    labels = np.repeat([0, 1, 2], 200)
    champion = labels.copy()
    challenger = labels.copy()
    challenger[400:460] = 0  # class 2 loses 60 of its 200 (recall 0.70)
    champion[:60] = 1  # the champion is as wrong overall, on class 0 (recall 0.70)
    decided = compare(
        predictions(labels, champion, classes=3),
        predictions(labels, challenger, classes=3),
        ["a", "b", "c"],
        ChampionPolicy(margin=0.05),
        "v2",
    )
    assert not decided.promoted
    failed = [c for c in decided.checks if not c.passed]
    assert [c.check for c in failed] == ["recall c"]
    assert failed[0].difference == pytest.approx(-0.30)
    assert "recall of class c 0.70 vs the champion's 1.00 (-0.30, tolerance 0.10)" in decided.reason


def test_a_worse_calibrated_challenger_is_not_promoted():
    labels = np.repeat([0, 1], 500)
    wrong = labels.copy()
    wrong[:100] = 1  # 90% right
    decided = compare(
        predictions(labels, wrong, confidence=0.9),  # as confident as it is right
        predictions(labels, wrong, confidence=0.999),  # far more confident than right
        ["a", "b"],
        ChampionPolicy(),
        "v1",
    )
    assert not decided.promoted
    assert [c.check for c in decided.checks if not c.passed] == ["ece"]
    assert decided.reason.startswith("expected calibration error 0.099 vs the champion's 0.000")


def test_two_models_of_other_images_are_not_compared():
    labels = np.zeros(4, dtype=int)
    one = predictions(labels, labels)
    other = dataclasses.replace(one, keys=np.asarray(["x", "y", "z", "w"]))
    with pytest.raises(ValueError, match="not scored on the same images"):
        compare(one, other, ["a", "b"], ChampionPolicy(), "v1")


def test_the_summary_and_index_html_show_the_decision_table(tmp_path, split, colour_model_writer):
    from pipelines.summary import format_result
    from pipelines.targets.local.results import Verdict, _verdict_section

    root = tmp_path / "registry"
    first = register(colour_model(tmp_path / "good", colour_model_writer), root, split)
    worse = colour_model(tmp_path / "worse", colour_model_writer, order=(0, 2, 1))
    second = register(worse, root, split)
    result = {"experiment": "colours", "target": "local", "status": "SUCCEEDED"}

    text = format_result({**result, "registration": first.to_output()})
    assert f"champion: promoted: first version of '{NAME}': no champion to compare with" in text
    lines = format_result({**result, "registration": second.to_output()}).splitlines()
    table = lines[lines.index("champion:") + 1 :]
    assert table[1].split()[:4] == ["accuracy", "1.0000", "0.3333", "-0.6667"]
    assert table[1].endswith("FAILED")
    assert any(line.startswith("  McNemar exact p = 1.19e-07 on 36 images") for line in table)
    verdict = champion_decision(second).verdict
    assert verdict.startswith("not promoted: accuracy 33.33%") and f"  {verdict}" in table
    assert "the recall of 2 classes fell by more than the 0.10 tolerance (most: class" in verdict

    page = _verdict_section(
        Verdict("SUCCEEDED", 1.0, f"{NAME} v2", champion=champion_decision(second)), tmp_path
    )
    assert 'champion: <b class="bad">not promoted</b>: accuracy 33.33%' in page
    assert (
        "<th>champion v1</th>" in page and page.count("<tr>") == 1 + 4
    )  # accuracy, 2 recalls, ece
    assert "36 test images; exact McNemar p = 1.19e-07" in page


def test_a_model_as_good_on_200_small_classes_is_not_refused_for_one_class_by_chance():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(200), 30)
    champion = labels.copy()
    challenger = labels.copy()
    # each model wrong on its own random 4% of the images: some class loses 3 of its 30
    for wrong in (champion, challenger):
        flip = rng.random(len(labels)) < 0.04
        wrong[flip] = (labels[flip] + 1) % 200
    decided = compare(
        predictions(labels, champion, classes=200),
        predictions(labels, challenger, classes=200),
        [f"c{i}" for i in range(200)],
        ChampionPolicy(margin=0.02),
        "v1",
    )
    recall = [c for c in decided.checks if c.check.startswith("recall ")]
    assert len(recall) == 1 and recall[0].difference < -0.10  # past the tolerance, by chance
    assert recall[0].passed and recall[0].p_value > 0.05 / 200
    assert decided.promoted, decided.reason


def test_the_first_version_is_registered_without_importing_the_metrics(
    tmp_path, split, colour_model_writer
):
    """With no champion to compare with, the register step has no predictions to score: it
    must not pay scikit-learn's import (about 0.7 s a step), only a real comparison does."""
    import subprocess
    import sys

    model = colour_model(tmp_path / "model", colour_model_writer)
    code = (
        "import sys; from components.register.run import register_local, champion_decision; "
        "from components.spec.champion import ChampionPolicy; "
        "record = register_local(sys.argv[1], sys.argv[2], 'colours', {}, "
        "dataset_dir=sys.argv[3], champion=ChampionPolicy()); "
        "print(record.version, champion_decision(record).promoted, 'sklearn' in sys.modules)"
    )
    root = tmp_path / "registry"

    def register_in_a_fresh_interpreter(folder):
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder), str(root), str(split)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert register_in_a_fresh_interpreter(model) == "v1 True False"
    # the control: with v1 the champion, registering another model compares the two
    other = colour_model(tmp_path / "other", colour_model_writer, order=(0, 2, 1))
    assert register_in_a_fresh_interpreter(other) == "v2 False True"
