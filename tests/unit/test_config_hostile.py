"""Loading hostile experiment files and overrides: each ends in one ConfigError that says what to
fix, quickly and in little memory, never a traceback, a hang or a silently wrong config."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_experiment
from pipelines.experiment_file import ALIAS_BUDGET, MAX_FILE_BYTES, QUOTE_CHARS, parse_yaml

VALID = """\
data: {source: 'sklearn:digits', image_size: [8, 8], channels: 1}
models:
  - {name: m, architecture: small_cnn, epochs: 1}
"""


def write(tmp_path: Path, content: str | bytes, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error(path: Path | str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as caught:
        load_experiment(str(path), overrides)
    return str(caught.value)


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_the_valid_base_loads(tmp_path):
    assert load_experiment(str(write(tmp_path, VALID))).models[0].epochs == 1


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    params = "{" + ", ".join(billion_laughs().splitlines()) + "}"
    text = VALID.replace("epochs: 1}", f"epochs: 1, params: {params}}}")

    message = error(write(tmp_path, text))  # without the budget: gigabytes and minutes

    assert "aliases (*name) expand to" in message and f"at most {ALIAS_BUDGET:,}" in message


def test_a_few_aliases_are_fine(tmp_path):
    text = VALID.replace(
        "models:\n  - {name: m, architecture: small_cnn, epochs: 1}",
        "models:\n  - {name: m, architecture: small_cnn, epochs: 1, augment: &aug {flip: "
        "horizontal}}\n  - {name: n, architecture: cnn3, epochs: 1, augment: *aug}",
    )

    experiment = load_experiment(str(write(tmp_path, text)))

    assert experiment.models[1].augment.flip == "horizontal"


def test_a_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="refers to the value it is part of"):
        parse_yaml("a: &a [1, *a]\n", "x.yaml")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = write(tmp_path, VALID + "description: " + "x" * MAX_FILE_BYTES + "\n")

    assert f"larger than {MAX_FILE_BYTES:,} bytes" in error(path)


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    text = VALID + "models:\n  - {name: n, architecture: lenet5}\n"

    message = error(write(tmp_path, text))

    assert "duplicate key 'models' on lines 2 and 4" in message


def test_duplicate_nested_keys_too(tmp_path):
    text = VALID.replace("channels: 1}", "channels: 1, channels: 3}")

    assert "duplicate key 'channels' on lines 1 and 1" in error(write(tmp_path, text))


def test_a_merge_key_may_be_overridden(tmp_path):
    text = VALID + "gate: {<<: {metric: accuracy, min: 0.1}, min: 0.2}\n"

    assert load_experiment(str(write(tmp_path, text))).gate.min == 0.2


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("models.0.epochs=true", "models.0.epochs"),
        ("models.0.batch_size=false", "models.0.batch_size"),
        ("models.0.optimizer.learning_rate=true", "models.0.optimizer.learning_rate"),
        ("data.channels=true", "data.channels"),
        ("data.image_size=[true, 8]", "data.image_size"),
        ("seeds=[true]", "seeds"),
        ("gate.min=true", "gate.min"),
    ],
)
def test_booleans_are_not_numbers(tmp_path, override, field):
    message = error(write(tmp_path, VALID), (override,))

    assert f"  {field}: a number is expected here, not true/false" in message


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_are_unsigned_32_bit(tmp_path, seed):
    message = error(write(tmp_path, VALID), (f"seeds=[0, {seed}]",))

    assert "seeds.1:" in message and str(seed) in message


def test_the_largest_seed_is_accepted(tmp_path):
    experiment = load_experiment(str(write(tmp_path, VALID)), (f"seeds=[{2**32 - 1}]",))

    assert experiment.seeds == [2**32 - 1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (bytes(range(256)) * 4, "is not a text file (it holds NUL bytes)"),
        (VALID.encode("utf-16"), "is UTF-16/UTF-32 text; save it as UTF-8"),
        (
            (VALID + "description: café\n").encode("latin-1"),
            "is not UTF-8 text (byte 0xe9 on line 4",
        ),
        ("\ufeff" + VALID, None),  # a UTF-8 byte-order mark is fine
    ],
)
def test_files_that_are_not_utf8_text(tmp_path, content, expected):
    path = write(tmp_path, content.encode("utf-8") if isinstance(content, str) else content)

    if expected is None:
        assert load_experiment(str(path)).models[0].name == "m"
    else:
        message = error(path)
        assert message.startswith(f"{path}: ") and expected in message


def test_deep_nesting_is_one_line_not_a_recursion_traceback(tmp_path):
    path = write(tmp_path, VALID + "description: " + "[" * 100_000 + "]" * 100_000 + "\n")

    message = error(path)

    assert "nested too deeply" in message and "\n" not in message


def test_a_huge_value_is_quoted_only_by_its_start(tmp_path):
    path = write(tmp_path, VALID + "bogus: " + "y" * 900_000 + "\n")

    message = error(path)

    assert len(message) < 1000
    assert "'" + "y" * (QUOTE_CHARS - 1) + "..." in message and "900,002 characters" in message


def test_a_huge_override_value_is_quoted_only_by_its_start(tmp_path):
    message = error(write(tmp_path, VALID), ("models.0.architecture=" + "z" * 100_000,))

    assert len(message) < 2000


def test_errors_from_set_are_blamed_on_set(tmp_path):
    path = write(tmp_path, VALID.replace("epochs: 1", "epochs: 0"))

    message = error(path, ("models.0.batch_size=0",))

    lines = message.splitlines()
    assert any(
        line.startswith("  models.0.batch_size:")
        and line.endswith("[from --set models.0.batch_size=0]")
        for line in lines
    ), message
    (from_file,) = [line for line in lines if line.startswith("  models.0.epochs:")]
    assert "--set" not in from_file  # the file's own mistake stays the file's


def test_when_every_problem_comes_from_set_the_heading_says_so(tmp_path):
    path = write(tmp_path, VALID)

    message = error(path, ("models.0.epochs=0",))

    assert message.startswith(f"--set ({path}): 1 problem(s) in the experiment")


def test_a_whole_section_set_is_blamed_for_the_fields_below_it(tmp_path):
    message = error(write(tmp_path, VALID), ("gate={metric: accuracy, min: 7}",))

    assert "gate.min:" in message and "[from --set gate={metric: accuracy, min: 7}]" in message


def test_a_bad_override_value_is_blamed_on_set(tmp_path):
    message = error(write(tmp_path, VALID), ("seeds=[0, 1",))

    assert message.startswith("--set 'seeds=[0, 1': not valid YAML")


def test_an_alias_bomb_in_an_override_is_refused(tmp_path):
    bomb = "{" + ", ".join(billion_laughs(6).splitlines()) + "}"

    assert "aliases (*name) expand to" in error(write(tmp_path, VALID), (f"description={bomb}",))


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("models.0.epoch=3", "did you mean epochs?"),
        ("models.0.optimizer.learning_rte=0.1", "did you mean learning_rate?"),
        ("data.sorce=sklearn:digits", "did you mean source?"),
        ("registr.name=x", "did you mean register?"),
        ("models.0.zzzz=1", "ModelSpec takes name, framework, architecture"),
    ],
)
def test_unknown_fields_get_the_closest_name(tmp_path, override, suggestion):
    message = error(write(tmp_path, VALID), (override,))

    assert "unknown field; " + suggestion in message


def test_a_candidate_name_with_an_underscore_is_told_the_rule(tmp_path):
    message = error(write(tmp_path, VALID), ("models.0.name=small_cnn",))

    assert "models.0.name: not a valid name: names may hold lower-case letters" in message
    assert "(not '_')" in message and "(e.g. small-cnn)" in message
    assert "pattern" not in message  # no raw regular expression


def test_relative_paths_are_read_from_the_experiment_files_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    path = write(
        project,
        "data:\n  source: folder:images\n  extra_train_sources: ['csv:../more.csv', "
        "'npz:/abs/x.npz', 'folder:gs://bucket/pets', 'tfds:mnist']\n"
        "models:\n  - {name: m, architecture: small_cnn}\n",
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the file's folder

    experiment = load_experiment(str(path.relative_to(tmp_path)))

    assert experiment.data.source == f"folder:{project / 'images'}"
    assert experiment.data.extra_train_sources == [
        f"csv:{tmp_path / 'more.csv'}",
        "npz:/abs/x.npz",
        "folder:gs://bucket/pets",
        "tfds:mnist",
    ]


def test_a_relative_path_given_with_set_is_kept_as_given(tmp_path):
    experiment = load_experiment(str(write(tmp_path, VALID)), ("data.source=folder:here",))

    assert experiment.data.source == "folder:here"


def test_bundled_experiments_keep_their_sources():
    assert load_experiment("digits").data.source == "sklearn:digits"
