"""Whether a search paid and whether its ranking could tell trials apart: the gain over the
untuned recipe and the ranking's noise, judged against their standard errors."""

from __future__ import annotations

import math

import pytest

from components.search.gain import gain, ranking_noise


def test_a_gain_inside_its_noise_says_so_and_one_beyond_it_does_not():
    small = gain({0: 0.968, 1: 0.971}, {0: 0.967, 1: 0.969}, "accuracy", True, 2000)
    assert small is not None and small.mean == pytest.approx(0.0015)
    assert small.std is not None and small.inside_noise
    assert "inside the noise" in small.text("accuracy") and "2000 test images" in small.text(
        "accuracy"
    )
    large = gain({0: 0.985, 1: 0.986}, {0: 0.940, 1: 0.942}, "accuracy", True, 2000)
    assert large is not None and not large.inside_noise
    assert "beyond the noise" in large.text("accuracy")
    # a metric to minimise: a lower loss is a positive gain
    loss = gain({0: 0.10}, {0: 0.30}, "log_loss", False, None)
    assert loss is not None and loss.mean == pytest.approx(0.2) and loss.inside_noise is None
    assert gain({0: 0.9}, {1: 0.8}, "accuracy", True, 100) is None  # no seed in common


def test_the_ranking_noise_of_a_small_validation_split_is_named_with_the_size_it_needs():
    close = ranking_noise("val_accuracy", 0.970, 0.9695, 720)
    assert close is not None and "inside the validation noise" in close and "720 images" in close
    needed = int(close.split("needs about ")[1].split()[0])
    # with that many validation images the same lead is told apart; with half, it is not
    told = ranking_noise("val_accuracy", 0.970, 0.9695, math.ceil(needed * 1.01))
    assert told is not None and "beyond" in told
    untold = ranking_noise("val_accuracy", 0.970, 0.9695, needed // 2)
    assert untold is not None and "inside" in untold
    apart = ranking_noise("val_accuracy", 0.97, 0.90, 720)
    assert apart is not None and "beyond the validation noise" in apart
    assert ranking_noise("val_loss", 0.1, 0.2, 720) is None


def test_the_ranking_noise_names_folds_where_the_validation_split_is_short():
    short = ranking_noise("val_accuracy", 0.970, 0.965, 720, folds=1, pool=7200)
    assert short is not None and "coin toss" in short
    assert "search.folds: 5 ranks the trials on all 7200 images of train + validation" in short
    folded = ranking_noise("val_accuracy", 0.970, 0.965, 7200, folds=5, pool=7200)
    assert folded is not None and "7200 images, 5 folds of train + validation" in folded
    assert "search.folds" not in folded
    # with folds, the spread of the paired fold differences counts where it is the larger
    spread = ranking_noise("val_accuracy", 0.970, 0.940, 7200, folds=5, pool=7200, lead_se=0.02)
    assert spread is not None and "inside the validation noise (±0.0400" in spread
    assert "fold differences" in spread and "needs about" not in spread
    narrow = ranking_noise("val_accuracy", 0.970, 0.940, 7200, folds=5, pool=7200, lead_se=0.001)
    assert narrow is not None and "beyond" in narrow and "fold differences" not in narrow
