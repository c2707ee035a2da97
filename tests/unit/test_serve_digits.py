"""The documented serve command on a digits model trained here, evaluated and registered as a
pipeline run would: the server's top-1 is predict's on new images, and the parity check agrees
with the evaluate step on the test split's first 64 images under a bounded load."""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest
from PIL import Image
from test_serve import Server, instance, post

from components.spec import DataConfig, ModelSpec

NAME = "digits-classifier"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """sklearn digits, a small CNN trained on it, its evaluation and its registration as v1."""
    from components.evaluate.run import evaluate
    from components.ingest.run import ingest
    from components.register.run import register_local
    from components.train.run import train

    root = tmp_path_factory.mktemp("digits")
    ingest(
        DataConfig(source="sklearn:digits", image_size=(8, 8), channels=1),
        root / "dataset",
        root / "quarantine.csv",
    )
    spec = ModelSpec(
        name="digits-cnn",
        architecture="small_cnn",
        epochs=6,
        batch_size=32,
        params={"filters": 8},
        optimizer={"learning_rate": 0.003},
    )
    train(root / "dataset", spec, 0, root / "model", root / "curves.html", root / "checkpoints")
    result = evaluate(root / "model", root / "dataset", root / "predictions", root / "report.html")
    register_local(root / "model", root / "registry", NAME, result["scalars"])
    (root / "registry" / NAME / "aliases.json").write_text(json.dumps({"champion": "v1"}))
    return root


@pytest.fixture(scope="module")
def served(run):
    server = Server("--model", str(run / "registry" / NAME), "--port", "0")
    url = server.started()
    yield url
    assert server.stop() == 0


@pytest.fixture(scope="module")
def new_images(tmp_path_factory):
    """40 digits the model never saw: sklearn's 8x8 digits, shifted by a pixel, with noise,
    enlarged to 24x24 or 16x12 (the server and predict resize them alike)."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("new")
    digits = load_digits()
    rng = np.random.default_rng(7)
    for index, row in enumerate(rng.choice(len(digits.images), 40, replace=False)):
        pixels = np.roll(digits.images[row] * 16, 1, axis=int(rng.integers(0, 2)))
        pixels = (pixels + rng.normal(0, 12, pixels.shape)).clip(0, 255).astype(np.uint8)
        size = (24, 24) if index % 2 else (16, 12)
        Image.fromarray(pixels, mode="L").resize(size, Image.Resampling.BILINEAR).save(
            folder / f"digit-{index:02d}.png"
        )
    return sorted(folder.glob("*.png"))


def test_the_server_answers_as_predict_on_40_new_images(served, run, new_images, capsys):
    from components.predict.cli import main as predict

    assert (
        predict(["--model", str(run / "registry" / NAME / "v1"), "--json", *map(str, new_images)])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    expected = {r["path"].rsplit("/", 1)[-1]: r["top"][0]["class"] for r in document["results"]}
    body = json.dumps({"instances": [instance(p.read_bytes()) for p in new_images]}).encode()
    status, answer = post(served + ":predict", body)
    assert status == 200
    served_top1 = {
        p.name: a["label"] for p, a in zip(new_images, answer["predictions"], strict=True)
    }
    assert len(served_top1) == 40 and served_top1 == expected
    assert len(set(expected.values())) > 3  # the images are not all one class


def test_the_parity_check_agrees_with_the_evaluate_step(served, run, capsys):
    from components.serve.check import main as check

    code = check(
        [
            "--url", served,
            "--dataset", str(run / "dataset"),
            "--predictions", str(run / "predictions"),
            "--requests", "100",
            "--seconds", "30",
            "--json",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"]
    assert report["images"] == report["agreed"] == 64 and report["mismatches"] == []
    assert 0 < report["requests"] <= 100
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p95"]
    assert report["throughput"] > 0
    print(f"\n{report}", file=sys.stderr)


def test_the_check_finds_a_server_that_answers_otherwise(served, run, tmp_path):
    """The evaluate step's predictions with every top-1 moved to the next class: all 64 differ."""
    from components.serve.check import run_check

    with np.load(run / "predictions" / "predictions.npz") as stored:
        moved = dict(stored)
    moved["probabilities"] = np.roll(moved["probabilities"], 1, axis=1)
    np.savez(tmp_path / "predictions.npz", **moved)
    report = run_check(served, run / "dataset", tmp_path, requests=5, seconds=5)
    assert not report.passed and len(report.mismatches) == 64 and report.agreed == 0


def test_the_check_loads_only_a_server_on_this_machine(run):
    from components.serve.check import CheckError, run_check

    with pytest.raises(CheckError, match="is not on this machine"):
        run_check("http://10.0.0.1:8080/v1/models/x", run / "dataset", run / "predictions")


def test_base64_of_a_file_is_what_the_curl_example_sends(new_images):
    """`base64 -w0 FILE` output (no newline) and wrapped output both decode to the file."""
    from components.serve.protocol import Base64, Instance, decode_instance

    data = new_images[0].read_bytes()
    flat = base64.b64encode(data).decode()
    wrapped = "\n".join(flat[i : i + 76] for i in range(0, len(flat), 76))
    first = decode_instance(Instance(image_bytes=Base64(b64=flat)), 0, (8, 8), 1)
    second = decode_instance(Instance(image_bytes=Base64(b64=wrapped)), 0, (8, 8), 1)
    np.testing.assert_array_equal(first, second)


@pytest.fixture(scope="module")
def exported_version(run):
    """The same model registered again with its SavedModel and ONNX exports (v2)."""
    from components.export.run import export_model
    from components.register.run import register_local
    from components.spec.export import ExportConfig

    export_model(
        run / "model", run / "dataset", run / "export", ExportConfig(formats=["onnx"]),
        run / "export.html",
    )  # fmt: skip
    record = register_local(
        run / "model", run / "registry", NAME, {"accuracy": 1.0}, export_dir=run / "export"
    )
    assert record.version == "v2" and set(record.exports) == {"saved_model", "onnx"}
    return run / "registry" / NAME / "v2"


@pytest.mark.parametrize("name", ["saved_model", "onnx"])
def test_an_exported_format_is_served_with_its_runtime_as_predict_runs_it(
    exported_version, new_images, capsys, name
):
    from components.predict.cli import main as predict

    images = new_images[:12]
    argv = ["--model", str(exported_version), "--format", name, "--json", *map(str, images)]
    assert predict(argv) == 0
    expected = [r["top"][0]["class"] for r in json.loads(capsys.readouterr().out)["results"]]
    server = Server("--model", str(exported_version), "--format", name, "--port", "0")
    try:
        url = server.started()
        body = json.dumps({"instances": [instance(p.read_bytes()) for p in images]}).encode()
        status, answer = post(url + ":predict", body)
    finally:
        assert server.stop() == 0
    assert f"(keras, {name}, 10 classes)" in "".join(server.output)
    assert status == 200 and [p["label"] for p in answer["predictions"]] == expected
