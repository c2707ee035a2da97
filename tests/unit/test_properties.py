"""Property-based tests (hypothesis): the config loader only ever raises ConfigError, and the
image validator decodes or quarantines any bytes with a reason, never raising or hanging."""

from __future__ import annotations

import io
import string
import time

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from components.ingest import validate
from components.ingest.validate import REASONS, Checked, check_image, check_item
from pipelines.config import ConfigError, Experiment, load_experiment

# --- the config loader ------------------------------------------------------------------------

FIELD_NAMES = ["data", "models", "seeds", "gate", "source", "name", "epochs", "image_size"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["sklearn:digits", "small_cnn", "keras", "folder:/nowhere", "1e400"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), children, max_size=4
        ),
    ),
    max_leaves=30,
)
yaml_text = st.one_of(
    documents.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    st.text(alphabet=string.printable + "&*!|>%@`{}[]:-#'\"\u00e9\u2603", max_size=300),
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _loads_or_config_error(experiment: str, overrides: tuple[str, ...] = ()) -> None:
    try:
        assert isinstance(load_experiment(experiment, overrides), Experiment)
    except ConfigError as exc:
        assert str(exc).strip()  # something to read


@SETTINGS
@given(text=yaml_text)
@example(text="a: &a [*a]")
@example(text="data: {source: sklearn:digits}\ndata: {}\n")
@example(text="? [1, 2]\n: x\n")
@example(text="!!python/object:os.system x")
@example(text="data: !!binary aGVsbG8=\nmodels: [{name: m, architecture: small_cnn}]\n")
@example(text="models: [{name: m, architecture: small_cnn, epochs: 1e400}]\ndata: {source: x}")
def test_any_yaml_file_loads_or_raises_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "experiment.yaml"
    path.write_text(text, encoding="utf-8")

    _loads_or_config_error(str(path))


@SETTINGS
@given(data=st.binary(max_size=400))
@example(data=b"\xff\xfe" + "data: {}".encode("utf-16-le"))
@example(data=b"caf\xe9: 1\n")
def test_any_bytes_as_a_file_load_or_raise_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "experiment.yaml"
    path.write_bytes(data)

    _loads_or_config_error(str(path))


override_keys = st.one_of(
    st.sampled_from(
        ["models.0.epochs", "models.0", "models.5.name", "data", "data.source", "seeds.0", "gate"]
    ),
    st.text(alphabet=string.ascii_lowercase + "._0123456789", max_size=20),
)


@SETTINGS
@given(key=override_keys, value=yaml_text)
@example(key="models.0.epochs", value="true")
@example(key="seeds", value="[-1]")
@example(key="models.0", value="[1, 2]")
@example(key="description", value="&a [*a, *a]")
def test_any_set_override_applies_or_raises_config_error(key, value):
    _loads_or_config_error("digits", (f"{key}={value}",))


@SETTINGS
@given(override=st.text(max_size=60))
def test_any_set_string_applies_or_raises_config_error(override):
    _loads_or_config_error("digits", (override,))


# --- the image validator ----------------------------------------------------------------------


def _encoded(image_format: str, mode: str = "RGB", size: tuple[int, int] = (9, 7)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, "red" if mode != "1" else 1)
    image.putpixel((1, 1), (0, 0, 255) if mode == "RGB" else 0)
    image.save(buffer, format=image_format)
    return buffer.getvalue()


VALID_IMAGES = [
    _encoded("PNG"),
    _encoded("JPEG"),
    _encoded("GIF", "P"),
    _encoded("BMP"),
    _encoded("WEBP"),
    _encoded("TIFF"),
    _encoded("PNG", "RGBA"),
    _encoded("PNG", "L"),
    _encoded("JPEG", "CMYK"),
]


def _assert_decoded_or_quarantined(checked: Checked) -> None:
    if checked.reason is None:
        assert checked.data and checked.format in ("jpeg", "png")
        assert checked.width > 0 and checked.height > 0
        with Image.open(io.BytesIO(checked.data)) as stored:
            stored.load()  # what is kept decodes
    else:
        assert checked.data is None and checked.code in REASONS, checked.reason
        assert checked.reason.split(": ", 1)[1], checked.reason  # a detail to read


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=2000), channels=st.sampled_from([1, 3]))
def test_arbitrary_bytes_are_decoded_or_quarantined(raw, channels):
    _assert_decoded_or_quarantined(check_image(raw, channels, seconds=20))


@settings(max_examples=300, deadline=None)
@given(
    original=st.sampled_from(VALID_IMAGES),
    cut=st.floats(min_value=0.0, max_value=1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
    channels=st.sampled_from([1, 3]),
)
def test_valid_images_truncated_or_corrupted_are_decoded_or_quarantined(
    original, cut, flips, channels
):
    damaged = bytearray(original[: int(len(original) * cut)] if cut < 1.0 else original)
    for where, value in flips:
        if damaged:
            damaged[min(int(where * len(damaged)), len(damaged) - 1)] = value

    checked = check_item(lambda: bytes(damaged), channels)

    _assert_decoded_or_quarantined(checked)
    if not flips and cut < 1.0 and len(damaged) < len(original) // 2:
        assert checked.reason is not None  # half an image is never kept as if whole


@pytest.mark.parametrize("image", VALID_IMAGES[:6])
def test_the_undamaged_images_are_kept(image):
    assert check_image(image, 3).reason is None


def test_a_check_that_never_ends_is_cut_at_the_time_limit(monkeypatch):
    def spin(*args: object) -> Checked:
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(validate, "_check", spin)

    checked = check_image(_encoded("PNG"), 3, seconds=0.2)

    assert checked.code == "timed out" and "more than 0.2 s" in str(checked.reason)


def test_the_time_limit_leaves_no_timer_behind():
    import signal

    check_image(_encoded("PNG"), 3, seconds=5)

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
