"""`python -m components.predict` on images whose class is known, with a real keras Model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from components.common.pixels import load_image, resize_bilinear
from components.predict.cli import expand_inputs, main

CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory, colour_model_writer):
    return colour_model_writer(tmp_path_factory.mktemp("model"), CLASSES, size=8)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    Image.new("RGB", (30, 20), (230, 10, 10)).save(folder / "red.png")
    Image.new("RGB", (17, 17), (10, 10, 240)).save(folder / "blue.jpg", quality=95)
    Image.new("RGB", (5, 9), (0, 200, 0)).save(folder / "nested" / "green.gif")
    Image.new("RGBA", (12, 12), (250, 0, 0, 40)).save(folder / "nested" / "red-alpha.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_json(capsys, argv):
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def top1(document):
    return {r["path"].rsplit("/", 1)[-1]: r["top"][0]["class"] for r in document["results"]}


def test_files_get_their_colour(capsys, colour_model, images):
    code, document, _ = run_json(
        capsys, ["--model", str(colour_model), str(images / "red.png"), str(images / "blue.jpg")]
    )
    assert code == 0
    assert top1(document) == {"red.png": "red", "blue.jpg": "blue"}
    first = document["results"][0]["top"]
    assert len(first) == 3 and first[0]["class"] == "red" and first[0]["probability"] > 0.99
    assert first[1]["probability"] >= first[2]["probability"]
    assert sum(entry["probability"] for entry in first) == pytest.approx(1, abs=1e-5)
    assert document["model_name"] == "colours" and document["framework"] == "keras"
    assert document["top_k"] == 3 and document["errors"] == []  # 5 asked for, 3 classes exist


def test_folder_is_searched_recursively_and_glob_works(capsys, colour_model, images):
    code, document, _ = run_json(capsys, ["--model", str(colour_model), str(images), "-k", "1"])
    assert code == 0
    assert top1(document) == {
        "blue.jpg": "blue",
        "green.gif": "green",
        "red-alpha.png": "red",
        "red.png": "red",
    }
    assert all(len(r["top"]) == 1 for r in document["results"])
    code, document, _ = run_json(
        capsys, ["--model", str(colour_model), str(images / "**" / "*.png")]
    )
    assert code == 0 and set(top1(document)) == {"red.png", "red-alpha.png"}


def test_text_output(capsys, colour_model, images):
    assert main(["--model", str(colour_model), str(images / "red.png"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("red.png")
    assert lines[1].split()[0] == "red" and float(lines[1].split()[1]) > 0.99
    assert len(lines) == 3


def test_unreadable_image_is_reported_and_the_rest_still_scored(capsys, colour_model, images):
    broken = images / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    code, document, err = run_json(
        capsys,
        [
            "--model",
            str(colour_model),
            str(broken),
            str(images / "red.png"),
            str(images / "nope.png"),
        ],
    )
    assert code == 2
    assert top1(document) == {"red.png": "red"}
    assert {e["path"].rsplit("/", 1)[-1] for e in document["errors"]} == {"broken.jpg", "nope.png"}
    assert "broken.jpg: not a readable image" in err and "nope.png: no such file or folder" in err
    assert "Traceback" not in err


def test_missing_model_folder(capsys, tmp_path, images):
    assert main(["--model", str(tmp_path / "missing"), str(images / "red.png")]) == 2
    err = capsys.readouterr().err
    assert "model folder" in err and "does not exist" in err and "Traceback" not in err


def test_folder_without_model_card(capsys, tmp_path, images):
    assert main(["--model", str(tmp_path), str(images / "red.png")]) == 2
    assert "not a Model artifact (no model_card.json)" in capsys.readouterr().err


def test_no_images_matched(capsys, colour_model, tmp_path):
    assert main(["--model", str(colour_model), str(tmp_path / "*.jpg")]) == 2
    err = capsys.readouterr().err
    assert "pattern matched no files" in err and "no images matched" in err


def test_registry_version_folder_is_accepted(capsys, colour_model, images, tmp_path):
    from components.register.run import register_local

    record = register_local(colour_model, tmp_path / "registry", "colours", {"accuracy": 1.0})
    code, document, _ = run_json(capsys, ["--model", record.path, str(images / "blue.jpg")])
    assert code == 0 and top1(document) == {"blue.jpg": "blue"}


def test_a_decompression_bomb_is_skipped_and_the_good_results_printed(capsys, colour_model, images):
    bomb = images / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 Mpx in a few KB: Pillow refuses it

    code, document, err = run_json(
        capsys, ["--model", str(colour_model), str(bomb), str(images / "red.png")]
    )

    assert code == 2
    assert top1(document) == {"red.png": "red"}
    (problem,) = document["errors"]
    assert problem["path"] == str(bomb) and "decompression bomb" in problem["error"]
    assert "bomb.png: too many pixels to decode safely" in err and "Traceback" not in err


def test_a_garbage_keras_file_is_not_a_valid_model(capsys, colour_model, images, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(colour_model, broken)
    (broken / "keras" / "model.keras").write_bytes(b"this is no zip archive")

    assert main(["--model", str(broken), str(images / "red.png")]) == 2

    err = capsys.readouterr().err
    assert "model.keras is not a valid Keras model file (not a .keras zip archive)" in err
    assert "File not found" not in err and "Traceback" not in err


def test_a_registered_models_folder_takes_its_latest_version(
    capsys, colour_model, images, tmp_path
):
    import shutil

    from components.register.run import register_local

    registry = tmp_path / "registry"
    register_local(colour_model, registry, "colours", {"accuracy": 1.0})
    newer = tmp_path / "newer"
    shutil.copytree(colour_model, newer)  # another source model: a second version
    register_local(newer, registry, "colours", {"accuracy": 1.0})

    code, document, err = run_json(
        capsys, ["--model", str(registry / "colours"), str(images / "blue.jpg")]
    )

    assert code == 0 and top1(document) == {"blue.jpg": "blue"}
    assert f"using {registry / 'colours' / 'v2'} (the latest of 2 version(s))" in err


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "components.predict", "--model", str(tmp_path / "none"), "x.jpg"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert (
        completed.stderr.startswith("error: model folder") and "Traceback" not in completed.stderr
    )


def test_expand_inputs_keeps_order_and_drops_duplicates(images):
    found = expand_inputs([str(images / "red.png"), str(images), str(images / "red.png")])
    names = [p.name for p in found.paths]
    assert names[0] == "red.png" and names.count("red.png") == 1
    assert "notes.txt" not in names and found.problems == []


@pytest.mark.parametrize("size", [(8, 8), (20, 31), (13, 7), (5, 11), (1, 1)])
def test_resize_matches_tensorflow_bilinear(size):
    import tensorflow as tf

    image = np.random.default_rng(1).integers(0, 256, (13, 7, 3)).astype(np.float32)
    expected = tf.image.resize(image, size, method="bilinear").numpy()
    np.testing.assert_allclose(resize_bilinear(image, size), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("mode", "suffix", "channels"),
    [("RGB", "png", 3), ("L", "png", 1), ("L", "png", 3), ("RGB", "jpeg", 3)],
)
def test_load_image_matches_the_training_input(tmp_path, mode, suffix, channels):
    from components.common.tfdata import decode_and_resize

    pixels = (
        np.random.default_rng(2)
        .integers(0, 256, (23, 17, 3 if mode == "RGB" else 1))
        .astype(np.uint8)
    )
    picture = Image.fromarray(pixels.squeeze(), mode=mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=suffix.upper(), quality=90)
    path = tmp_path / f"image.{suffix}"
    path.write_bytes(buffer.getvalue())
    ours = load_image(path, (10, 12), channels)
    theirs = decode_and_resize(buffer.getvalue(), (10, 12), channels).numpy()
    assert ours.shape == theirs.shape == (10, 12, channels) and ours.dtype == np.float32
    if suffix == "png":  # lossless: the same pixels, the same resize
        np.testing.assert_allclose(ours, theirs, atol=1e-3)
    else:  # TensorFlow decodes JPEG with libjpeg's fast integer IDCT, Pillow with the exact one
        difference = np.abs(ours - theirs)
        assert difference.mean() < 1.5 and difference.max() < 8


@pytest.mark.parametrize("output", [None, "predictions.csv"])
def test_tensorflow_start_up_lines_stay_out_of_stderr(colour_model, images, tmp_path, output):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = ["--model", str(colour_model), str(images / "red.png")]
    if output:
        argv += ["--output", str(tmp_path / output)]
    completed = subprocess.run(
        [sys.executable, "-m", "components.predict", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr
    ours = ("predict (", "wrote ")  # batch predict's progress and its closing line
    noise = [line for line in completed.stderr.splitlines() if not line.startswith(ours)]
    assert noise == []


def test_what_native_code_writes_while_loading_comes_out_when_loading_fails(capfd):
    from components.predict.cli import quiet_start_up

    with quiet_start_up():
        os.write(2, b"start-up chatter\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), quiet_start_up():
        os.write(2, b"why it failed\n")
        raise RuntimeError("load failed")
    assert capfd.readouterr().err == "why it failed\n"
