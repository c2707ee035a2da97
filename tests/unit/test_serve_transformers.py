"""The server on a transformers Model artifact (a tiny ConvNeXt V2 built from a config), native
and through its ONNX export: the same top-1 as predict, with the card's preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_export import tiny_transformers_model
from test_serve import Server, instance, post


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_hf_checkpoint, image_dataset):
    from components.export.run import export_model
    from components.register.run import register_local
    from components.spec.export import ExportConfig

    root = tmp_path_factory.mktemp("hf")
    checkpoint = tiny_hf_checkpoint(root / "checkpoint", "convnextv2")
    model = tiny_transformers_model(root / "model", checkpoint)
    levels = {f"c{i}": 30 + 45 * i for i in range(5)}
    dataset = image_dataset(root, levels, 8, (36, 36), validation=0.2, test=0.3)
    export_model(model, dataset, root / "export", ExportConfig(formats=["onnx"]))
    register_local(model, root / "registry", "tiny", {"accuracy": 0.2}, export_dir=root / "export")
    return root / "registry" / "tiny" / "v1"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for index in range(10):
        pixels = rng.integers(0, 256, (int(rng.integers(20, 60)), 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo-{index}.png")
    return sorted(folder.glob("*.png"))


@pytest.mark.parametrize("name", ["native", "onnx"])
def test_a_transformers_model_is_served_as_predict_scores_it(version, photos, capsys, name):
    from components.predict.cli import main as predict

    assert predict(["--model", str(version), "--format", name, "--json", *map(str, photos)]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    server = Server("--model", str(version), "--format", name, "--port", "0")
    try:
        url = server.started()
        body = json.dumps({"instances": [instance(p.read_bytes()) for p in photos]}).encode()
        status, answer = post(url + ":predict", body)
    finally:
        assert server.stop() == 0
    assert status == 200
    assert f"(transformers, {name}, 5 classes)" in "".join(server.output)
    for result, served in zip(results, answer["predictions"], strict=True):
        assert served["label"] == result["top"][0]["class"]
        top = result["top"][0]
        assert served["probabilities"][top["class"]] == pytest.approx(top["probability"], abs=1e-5)
