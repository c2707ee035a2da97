"""The evaluate step end to end on a tiny Dataset, and the KFP component body around it.

The model is a numpy classifier (red vs blue by mean colour) registered as the loader of
"transformers" models: evaluation must not care which framework is behind `load_classifier`.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import components.models.loading as loaders
from components.common.dataset import (
    FEATURE_FORMAT,
    FEATURE_IMAGE,
    FEATURE_KEY,
    FEATURE_LABEL,
    shard_name,
)
from components.common.model_card import ModelCard
from components.common.results import DATASET_INFO_FILE
from components.evaluate.run import evaluate, worst_misclassified
from components.models.prediction import (
    STORED_PREDICTIONS_FILE,
    SplitPredictions,
    default_batch_size,
    load_stored,
    store_predictions,
)

CLASSES = ["blue", "red"]


def png(colour, size=(20, 14)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dataset(folder, class_names, examples, channels=3, image_size=(8, 8)):
    """A Dataset artifact with only a test split: examples are (key, label, encoded bytes)."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)

    def feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    with tf.io.TFRecordWriter(str(folder / shard_name("test", 0, 1))) as writer:
        for key, label, data in examples:
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        FEATURE_IMAGE: feature(data),
                        FEATURE_FORMAT: feature(b"png"),
                        FEATURE_LABEL: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[label])
                        ),
                        FEATURE_KEY: feature(key.encode()),
                    }
                )
            )
            writer.write(example.SerializeToString())
    info = {
        "source": "test:synthetic",
        "class_names": class_names,
        "num_classes": len(class_names),
        "image_size": list(image_size),
        "channels": channels,
        "counts": {"train": {}, "validation": {}, "test": {}},
        "num_examples": {"train": 0, "validation": 0, "test": len(examples)},
        "fingerprint": "synthetic",
    }
    (folder / DATASET_INFO_FILE).write_text(json.dumps(info))
    return folder


class ColourClassifier:
    """p(red) = sigmoid((mean red - mean blue) / 10)."""

    def __init__(self, model_dir, card):
        self.card = card

    def predict(self, images: np.ndarray) -> np.ndarray:
        assert images.shape[1:] == (*self.card.input_size, self.card.channels)
        assert images.dtype == np.float32 and images.max() <= 255.0
        margin = (images[..., 0].mean(axis=(1, 2)) - images[..., 2].mean(axis=(1, 2))) / 10
        red = 1 / (1 + np.exp(-margin))
        return np.stack([1 - red, red], axis=1).astype(np.float32)


@pytest.fixture
def colour_model(tmp_path, monkeypatch, model_card):
    monkeypatch.setitem(loaders.LOADERS, "transformers", ColourClassifier)
    return model_card(tmp_path / "model", "transformers", "colour", CLASSES, seed=3)


@pytest.fixture
def dataset(tmp_path):
    examples = [(f"blue/{i}", 0, png((0, 0, 200 + i))) for i in range(10)]
    examples += [(f"red/{i}", 1, png((200 + i, 0, 0))) for i in range(10)]
    # red-labelled but bluish: wrongly called blue, the bluer the more confidently
    examples += [(f"purple/{i}", 1, png((100, 0, 110 + 10 * i))) for i in range(3)]
    return write_dataset(tmp_path / "dataset", CLASSES, examples)


def test_evaluate_writes_predictions_metrics_and_report(tmp_path, colour_model, dataset):
    reference = {"metric": "accuracy", "value": 0.9, "note": "the reference system"}
    report = tmp_path / "report.html"
    result = evaluate(
        colour_model, dataset, tmp_path / "predictions", report, reference, batch_size=4
    )

    saved = np.load(tmp_path / "predictions" / "predictions.npz")
    assert sorted(saved.files) == ["class_names", "keys", "labels", "probabilities"]
    assert len(saved["keys"]) == 23 and len(set(saved["keys"].tolist())) == 23
    assert saved["class_names"].tolist() == CLASSES
    assert saved["probabilities"].shape == (23, 2)
    np.testing.assert_allclose(saved["probabilities"].sum(axis=1), 1, atol=1e-6)
    by_key = dict(zip(saved["keys"].tolist(), saved["labels"].tolist(), strict=True))
    assert by_key["red/3"] == 1 and by_key["blue/3"] == 0 and by_key["purple/0"] == 1

    assert result["accuracy"] == pytest.approx(20 / 23)
    assert result["confusion_matrix"] == [[10, 0], [3, 10]]
    assert result["roc_auc"] == pytest.approx(1.0)  # every red still scores above every blue
    assert set(result["scalars"]) >= {
        "accuracy",
        "macro_f1",
        "log_loss",
        "ece",
        "roc_auc",
        "pr_auc",
    }
    assert json.loads((tmp_path / "predictions" / "metrics.json").read_text())[
        "confusion_matrix"
    ] == [[10, 0], [3, 10]]

    page = report.read_text()
    assert "Reference accuracy: 0.9000" in page and "this run: <b>0.8696</b>" in page
    assert "ROC and precision-recall" in page
    # keys wrap after their separators, not inside words
    captions = [
        key.replace("<wbr>", "")
        for key in re.findall(r"<span class='muted key'>(purple/<wbr>\d)</span>", page)
    ]
    assert captions == ["purple/2", "purple/1", "purple/0"]  # bluest = most confidently wrong
    assert page.count('<img alt="purple/') == 3
    assert "3 of 3 misclassified" in page


# --- predictions the train step kept in the Model ---------------------------------------------


class Unloadable:
    """A loader that must not be reached: evaluation has the predictions already."""

    def __init__(self, model_dir, card):
        raise AssertionError("the model was loaded although its predictions were kept")


def keep_predictions(model_dir, dataset):
    """What the train step does: the model in hand predicts the test split into the Model."""
    return store_predictions(
        ColourClassifier(model_dir, ModelCard.load(model_dir)), dataset, model_dir
    )


def assert_same_evaluation(result, expected):
    assert result["scalars"] == pytest.approx(expected["scalars"])
    assert result["confusion_matrix"] == expected["confusion_matrix"]
    assert result["calibration"]["count"] == expected["calibration"]["count"]
    assert result["most_confused"] == expected["most_confused"]


def test_kept_predictions_score_as_the_model_does(tmp_path, colour_model, dataset, monkeypatch):
    predicted = evaluate(colour_model, dataset, tmp_path / "p1", tmp_path / "r1.html")
    keep_predictions(colour_model, dataset)
    monkeypatch.setitem(loaders.LOADERS, "transformers", Unloadable)
    kept = evaluate(colour_model, dataset, tmp_path / "p2", tmp_path / "r2.html")

    assert_same_evaluation(kept, predicted)
    first = np.load(tmp_path / "p1" / "predictions.npz")
    second = np.load(tmp_path / "p2" / "predictions.npz")
    assert second["keys"].tolist() == first["keys"].tolist()
    assert second["labels"].tolist() == first["labels"].tolist()
    np.testing.assert_allclose(second["probabilities"], first["probabilities"], rtol=1e-6)
    page = (tmp_path / "r2.html").read_text()
    assert page.count('<img alt="purple/') == 3  # the gallery's images, read without the model


def test_evaluate_from_kept_predictions_imports_no_framework(tmp_path, colour_model, dataset):
    import subprocess
    import sys

    keep_predictions(colour_model, dataset)
    code = (
        "import sys; from components.evaluate.run import evaluate; "
        "result = evaluate(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]); "
        "print(round(result['accuracy'], 6), sorted(m for m in ('tensorflow', 'keras', 'torch') "
        "if m in sys.modules))"
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(colour_model),
            str(dataset),
            str(tmp_path / "p"),
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == f"{round(20 / 23, 6)} []"


def test_predictions_of_another_dataset_are_not_used(tmp_path, colour_model, dataset):
    keep_predictions(colour_model, dataset)
    assert load_stored(colour_model, "synthetic") is not None
    assert load_stored(colour_model, "other") is None
    assert load_stored(colour_model, "synthetic", "validation") is None
    other = tmp_path / "other"
    examples = [(f"blue/{i}", 0, png((0, 0, 200 + i))) for i in range(4)]
    examples += [(f"red/{i}", 1, png((200 + i, 0, 0))) for i in range(4)]
    write_dataset(other, CLASSES, examples)
    # Same fingerprint, other images: the keys give it away, and the model predicts.
    result = evaluate(colour_model, other, tmp_path / "p", tmp_path / "r.html")
    assert result["examples"] == 8 and result["accuracy"] == 1.0


def test_a_new_training_replaces_what_an_earlier_one_kept(tmp_path, colour_model, dataset):
    keep_predictions(colour_model, dataset)
    empty = write_dataset(tmp_path / "empty", CLASSES, [])
    assert keep_predictions(colour_model, empty) is None
    assert not (colour_model / STORED_PREDICTIONS_FILE).exists()


def test_an_unreadable_or_missing_copy_falls_back_to_the_model(tmp_path, colour_model, dataset):
    expected = evaluate(colour_model, dataset, tmp_path / "p0", tmp_path / "r0.html")
    assert not (colour_model / STORED_PREDICTIONS_FILE).exists()
    (colour_model / STORED_PREDICTIONS_FILE).write_bytes(b"not a zip")
    assert load_stored(colour_model, "synthetic") is None
    result = evaluate(colour_model, dataset, tmp_path / "p", tmp_path / "r.html")
    assert_same_evaluation(result, expected)


def test_evaluate_refuses_a_model_of_other_classes(tmp_path, colour_model):
    dataset = write_dataset(tmp_path / "other", ["cat", "dog"], [("k", 0, png((1, 2, 3)))])
    with pytest.raises(ValueError, match="trained on classes"):
        evaluate(colour_model, dataset, tmp_path / "p", tmp_path / "r.html")


def test_worst_misclassified_orders_by_confidence():
    predictions = SplitPredictions(
        keys=np.asarray(["a", "b", "c", "d"]),
        labels=np.array([0, 0, 1, 1]),
        probabilities=np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.95, 0.05]]),
    )
    assert worst_misclassified(predictions) == [3, 0, 2]
    assert worst_misclassified(predictions, limit=1) == [3]


def test_default_batch_size_shrinks_with_input():
    assert default_batch_size((8, 8)) == 512
    assert default_batch_size((64, 64)) == 256
    assert default_batch_size((224, 224)) == 16
    assert default_batch_size((1024, 1024)) == 8


def test_component_logs_kfp_artifacts(tmp_path, colour_model, dataset):
    from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model

    from components.evaluate.component import evaluate as evaluate_component

    metrics = Metrics(uri=str(tmp_path / "metrics"))
    confusion = ClassificationMetrics(uri=str(tmp_path / "confusion"))
    output = evaluate_component.python_func(
        dataset=Dataset(uri=str(dataset)),
        model=Model(uri=str(colour_model)),
        reference={},
        predictions=Dataset(uri=str(tmp_path / "predictions")),
        metrics=metrics,
        confusion=confusion,
        report=HTML(uri=str(tmp_path / "report.html")),
        batch_size=0,
        gallery_size=2,
    )
    assert (
        output["name"] == "colour" and output["seed"] == 3 and output["framework"] == "transformers"
    )
    assert output["model_uri"] == str(colour_model)
    assert output["metrics"]["accuracy"] == pytest.approx(20 / 23)
    assert json.loads((tmp_path / "metrics").read_text()) == output["metrics"]
    assert metrics.metadata["accuracy"] == pytest.approx(20 / 23, abs=1e-6)

    text = (tmp_path / "confusion").read_text()
    assert "Infinity" not in text and "NaN" not in text
    logged = json.loads(text)
    assert [s["displayName"] for s in logged["confusionMatrix"]["annotationSpecs"]] == CLASSES
    assert [r["row"] for r in logged["confusionMatrix"]["rows"]] == [[10, 0], [3, 10]]
    points = logged["confidenceMetrics"]
    assert points[0]["confidenceThreshold"] == 1.0
    assert {"confidenceThreshold", "recall", "falsePositiveRate"} == set(points[0])
    assert (tmp_path / "report.html").read_text().count('<img alt="purple/') == 2


# --- a 200-class report (CUB-sized) in a real browser ---------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)
# Injected into a copy of the report: records script and resource errors, then writes what it
# found into the DOM, which --dump-dom prints.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(e.message || ("failed to load " + (e.target && e.target.tagName))), true);
window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = i => i.complete && i.naturalWidth > 0;
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    broken: images.filter(i => !loaded(i)).map(i => i.alt),
    gallery: [...document.querySelectorAll(".gallery figure img")].filter(loaded).length,
    gallery_figures: document.querySelectorAll(".gallery figure").length,
    tables: document.querySelectorAll("table").length,
    errors: window.__errors,
  }));
});
</script>"""


def _chromium() -> str | None:
    import shutil

    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def report_200(tmp_path_factory):
    """A report for 200 classes x 3 test images with a few systematic confusions."""
    from components.evaluate.metrics import classification_metrics
    from components.evaluate.report import write_report
    from components.evaluate.run import gallery_items

    folder = tmp_path_factory.mktemp("cub")
    n, per_class = 200, 3
    class_names = [f"{i:03d}.Species_{i}" for i in range(n)]
    class_names[7] = "007.Tern <Arctic & Common>"  # must be escaped, not parsed
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n), per_class)
    keys = [f"images/{class_names[label][:3]}/{index}.jpg" for index, label in enumerate(labels)]
    colours = rng.integers(0, 256, size=(len(labels), 3))
    examples = [
        (k, int(y), png(tuple(int(v) for v in c), (40, 30)))
        for k, y, c in zip(keys, labels, colours, strict=True)
    ]
    dataset = write_dataset(folder / "dataset", class_names, examples, image_size=(32, 32))
    logits = rng.normal(0, 1, (len(labels), n))
    logits[np.arange(len(labels)), labels] += 6
    for a, b in [(10, 11), (20, 21), (30, 31)]:
        logits[labels == a, b] += 9  # a is usually called b
    logits[rng.random(len(labels)) < 0.05, :] = rng.normal(0, 1, (1, n))  # some random mistakes
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predictions = SplitPredictions(np.asarray(keys), labels, probabilities)
    result = classification_metrics(labels, probabilities, class_names)
    gallery = gallery_items(predictions, class_names, dataset)
    path = write_report(
        result,
        class_names,
        "Evaluation: convnextv2-base (seed 0)",
        folder / "report.html",
        {"metric": "accuracy", "value": 0.9165, "note": "ConvNeXt V2"},
        gallery=gallery,
    )
    return path, result, gallery


def test_200_class_report_is_self_contained(report_200):
    path, result, gallery = report_200
    page = path.read_text()
    assert len(gallery) == 24 and all(item.image for item in gallery)
    assert page.count("<figure class='gallery-item'>") == 24
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert "href=" not in page and "<link" not in page  # nothing to fetch
    assert "007.Tern &lt;Arctic &amp; Common&gt;" in page and "<Arctic" not in page
    assert (
        "Reference accuracy: 0.9165" in page
        and f"this run: <b>{result['accuracy']:.4f}</b>" in page
    )
    assert "Close-up: the 20 classes" in page and "Most-confused class pairs" in page
    pairs = [(p["true"], p["predicted"]) for p in result["most_confused"][:3]]
    assert set(pairs) == {
        (f"{a:03d}.Species_{a}", f"{a + 1:03d}.Species_{a + 1}") for a in (10, 20, 30)
    }
    assert path.stat().st_size < 2_000_000


def test_200_class_report_renders_in_headless_chromium(report_200, tmp_path):
    import subprocess

    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "headless Chromium is not installed (Debian/Ubuntu: apt-get install -y chromium)"
        )
    path, _, _ = report_200
    probed = tmp_path / "probed.html"
    probed.write_text(path.read_text().replace("<head>", "<head>" + PROBE, 1))
    completed = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', completed.stdout)
    assert found, "the page never finished loading:\n" + completed.stdout[:2000]
    import html as html_module

    probe = json.loads(html_module.unescape(found.group(1)))
    assert probe["errors"] == [] and probe["broken"] == []
    assert probe["gallery_figures"] == 24 and probe["gallery"] == 24
    assert probe["images"] >= 24 + 3  # gallery, confusion overview, close-up, calibration
    assert probe["tables"] >= 3
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_a_class_the_model_never_predicts_is_called_out(tmp_path) -> None:
    from components.evaluate.metrics import classification_metrics
    from components.evaluate.report import write_report

    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([[0.9, 0.1, 0.0]] * 3 + [[0.1, 0.9, 0.0]] * 3)  # never class 2
    names = ["cat", "dog", "hamster"]
    result = classification_metrics(labels, probabilities, names)
    page = write_report(result, names, "t", tmp_path / "report.html").read_text()
    assert "never predicts 1 of 3 classes (hamster)" in page
    everything = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]] * 2)
    result = classification_metrics(labels, everything, names)
    assert "never predicts" not in write_report(result, names, "t", tmp_path / "b.html").read_text()
