"""The champion of a registered model: the version to use, and the decision that moves it.

`<registry>/<name>/aliases.json` maps an alias to a version folder (`{"champion": "v3"}`); the
model server and the next run's comparison read it. A registry without the file (versions
registered before there were champions) has its latest version as champion.

A new version (the challenger) becomes champion when `ChampionPolicy` (`gate.champion`) says it
is no worse than the champion on this run's test split: both models predict the same images,
the accuracy difference gets a paired bootstrap interval (SciPy's `stats.bootstrap`) and an
exact McNemar test (the binomial test of the discordant pairs), and per-class recall and the
expected calibration error are compared against their tolerances.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.common.files import read_json
from components.common.model_card import ModelCard
from components.common.results import ChampionCheck, ChampionDecision, DatasetInfo
from components.register.folders import versions
from components.spec.champion import ChampionPolicy

if TYPE_CHECKING:
    from components.models.prediction import SplitPredictions

ALIASES_FILE = "aliases.json"
CHAMPION = "champion"
MODEL_DIR = "model"  # the Model inside a version folder (components/register/run.py)
RECALL_ROWS = 5  # the classes whose recall fell most, in the decision table


class AliasError(ValueError):
    """aliases.json names a version the registry does not hold."""


def read_aliases(root: str | Path) -> dict[str, str]:
    """alias -> version folder name of the model folder `root` ({} when there is no file)."""
    path = Path(root) / ALIASES_FILE
    if not path.is_file():
        return {}
    aliases = read_json(path)
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise AliasError(f"{path} is not an object of alias -> version; delete it or fix it")
    return aliases


def champion_version(root: str | Path) -> Path | None:
    """The champion's version folder under the model folder `root`: the one aliases.json
    names, else the latest version; None when nothing is registered."""

    root = Path(root)
    if not root.is_dir():
        return None
    named = read_aliases(root).get(CHAMPION)
    if named is not None:
        folder = root / named
        if folder not in versions(root):
            raise AliasError(
                f"{root / ALIASES_FILE} names {CHAMPION} {named!r}, which is not a version of "
                f"{root.name} ({', '.join(p.name for p in versions(root)) or 'none'}); point it "
                "at one of them or delete the file"
            )
        return folder
    existing = versions(root)
    return existing[-1] if existing else None


def set_alias(root: str | Path, alias: str, version: str) -> None:
    """Point `alias` at `version` in aliases.json, written whole and renamed into place."""
    root = Path(root)
    aliases = {**read_aliases(root), alias: version}
    partial = root / f".{ALIASES_FILE}.{os.getpid()}.partial"
    partial.write_text(json.dumps(aliases, indent=2, sort_keys=True) + "\n")
    os.replace(partial, root / ALIASES_FILE)


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def compare(
    champion: SplitPredictions,
    challenger: SplitPredictions,
    class_names: list[str],
    policy: ChampionPolicy,
    champion_name: str,
) -> ChampionDecision:
    """The decision on two models' predictions of the same test images (keys, labels,
    probabilities, in the same order); `champion_name` is the champion's version."""
    import scipy.stats
    import sklearn.metrics as skm

    from components.evaluate.metrics import expected_calibration_error

    if champion.keys.tolist() != challenger.keys.tolist() or not np.array_equal(
        champion.labels, challenger.labels
    ):
        raise ValueError("the champion and the challenger were not scored on the same images")
    labels = challenger.labels
    n = len(labels)
    if n == 0:
        raise ValueError("there are no test images to compare the champion and challenger on")
    predicted = {
        "champion": champion.probabilities.argmax(axis=1),
        "challenger": challenger.probabilities.argmax(axis=1),
    }
    right = {who: (p == labels) for who, p in predicted.items()}
    accuracy = {who: float(r.mean()) for who, r in right.items()}
    difference = accuracy["challenger"] - accuracy["champion"]
    only_champion = int(np.sum(right["champion"] & ~right["challenger"]))
    only_challenger = int(np.sum(~right["champion"] & right["challenger"]))
    discordant = only_champion + only_challenger
    if discordant:
        mcnemar_p = float(scipy.stats.binomtest(only_challenger, discordant, 0.5).pvalue)
        interval = scipy.stats.bootstrap(
            (right["challenger"].astype(float), right["champion"].astype(float)),
            lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
            paired=True,
            vectorized=True,
            n_resamples=policy.resamples,
            confidence_level=policy.confidence,
            method="percentile",
            rng=np.random.default_rng(0),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    else:  # the same images right and wrong: no resample can differ
        mcnemar_p, low, high = 1.0, 0.0, 0.0
    level = f"{policy.confidence:.0%}"
    margin = f"{100 * policy.margin:.1f}-point margin"
    checks = [
        ChampionCheck(
            check="accuracy",
            champion=accuracy["champion"],
            challenger=accuracy["challenger"],
            difference=difference,
            low=low,
            high=high,
            limit=f"{level} interval's lower end at least -{100 * policy.margin:.1f} points",
            passed=low >= -policy.margin - 1e-12,
        )
    ]
    indices = list(range(len(class_names)))
    recall = {
        who: skm.recall_score(labels, p, labels=indices, average=None, zero_division=0)
        for who, p in predicted.items()
    }
    present = [i for i in indices if np.any(labels == i)]
    drops = {i: float(recall["champion"][i] - recall["challenger"][i]) for i in present}
    # A class fails when its recall fell by more than the tolerance and by more than its
    # images' noise: the exact one-sided McNemar test of its own discordant images, at the
    # interval's level split over the classes (Bonferroni), so that a model as good as the
    # champion is not refused for one of 200 classes with 30 images each.
    alpha = (1 - policy.confidence) / max(len(present), 1)
    noise = {}
    for i in present:
        mine = labels == i
        lost = int(np.sum(mine & right["champion"] & ~right["challenger"]))
        gained = int(np.sum(mine & ~right["champion"] & right["challenger"]))
        noise[i] = (
            float(scipy.stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue)
            if lost + gained
            else 1.0
        )
    # the classes that lost most first; the table shows at most RECALL_ROWS of the failing
    # ones (the one that lost most even when none fails)
    ranked = sorted(present, key=lambda i: -drops[i])
    below = [i for i in ranked if drops[i] > policy.recall_tolerance + 1e-12 and noise[i] < alpha]
    for i in (below or ranked[:1])[:RECALL_ROWS]:
        checks.append(
            ChampionCheck(
                check=f"recall {class_names[i]}",
                champion=float(recall["champion"][i]),
                challenger=float(recall["challenger"][i]),
                difference=-drops[i],
                p_value=noise[i],
                limit=f"loses at most {policy.recall_tolerance:.2f}, or within noise",
                passed=i not in below,
            )
        )
    ece = {
        who: expected_calibration_error(labels, p.probabilities)
        for who, p in (("champion", champion), ("challenger", challenger))
    }
    checks.append(
        ChampionCheck(
            check="ece",
            champion=ece["champion"],
            challenger=ece["challenger"],
            difference=ece["challenger"] - ece["champion"],
            limit=f"grows at most {policy.ece_tolerance:.3f}",
            passed=ece["challenger"] - ece["champion"] <= policy.ece_tolerance + 1e-12,
        )
    )
    accuracy_words = (
        f"accuracy {accuracy['challenger']:.2%} vs the champion {champion_name}'s "
        f"{accuracy['champion']:.2%} ({_points(difference)} points, {level} interval "
        f"[{_points(low)}, {_points(high)}])"
    )
    failed = [check for check in checks if not check.passed]
    if not failed and low > 0:
        reason = f"{accuracy_words}: better than the champion beyond the test split's noise"
    elif not failed:
        reason = f"{accuracy_words}: not worse than the champion by more than the {margin}"
    else:
        words = []
        if not checks[0].passed:
            words.append(f"{accuracy_words}: it may be worse by more than the {margin}")
        if len(below) == 1:
            (row,) = [check for check in failed if check.check.startswith("recall ")]
            words.append(
                f"recall of class {class_names[below[0]]} {row.challenger:.2f} vs the "
                f"champion's {row.champion:.2f} ({row.difference:+.2f}, tolerance "
                f"{policy.recall_tolerance:.2f})"
            )
        elif below:
            worst = below[0]
            words.append(
                f"the recall of {len(below)} classes fell by more than the "
                f"{policy.recall_tolerance:.2f} tolerance (most: class {class_names[worst]}, "
                f"{recall['challenger'][worst]:.2f} vs the champion's "
                f"{recall['champion'][worst]:.2f})"
            )
        if not checks[-1].passed:
            ece_row = checks[-1]
            words.append(
                f"expected calibration error {ece_row.challenger:.3f} vs the champion's "
                f"{ece_row.champion:.3f} (grew {ece_row.difference:+.3f}, tolerance "
                f"{policy.ece_tolerance:.3f})"
            )
        reason = "; ".join(words) + f"; the champion stays {champion_name}"
    return ChampionDecision(
        promoted=not failed,
        reason=reason,
        champion=champion_name,
        test_images=n,
        discordant=[only_champion, only_challenger],
        mcnemar_p=mcnemar_p,
        confidence=policy.confidence,
        checks=checks,
        classes_below=len(below),
    )


def decide(
    root: str | Path,
    name: str,
    model_dir: str | Path,
    dataset_dir: str | Path,
    policy: ChampionPolicy,
) -> ChampionDecision:
    """Whether the Model `model_dir` becomes the champion of `name` (model folder `root`):
    promoted outright when the comparison is off, when there is no champion yet, or when the
    champion predicts other classes (a class change the registry allowed); otherwise both are
    scored on the test split of the Dataset `dataset_dir` and `compare`d."""
    if not policy.enabled:
        return ChampionDecision(
            promoted=True,
            reason="gate.champion.enabled is false: every registered version is promoted",
        )
    champion_dir = champion_version(root)
    if champion_dir is None:
        return ChampionDecision(
            promoted=True, reason=f"first version of '{name}': no champion to compare with"
        )
    challenger_card = ModelCard.load(model_dir)
    champion_card = ModelCard.load(champion_dir / MODEL_DIR)
    if list(champion_card.class_names) != list(challenger_card.class_names):
        return ChampionDecision(
            promoted=True,
            champion=champion_dir.name,
            reason=f"the classes changed (register.allow_class_change): the champion "
            f"{champion_dir.name} predicts {len(champion_card.class_names)} other classes, so "
            "the two cannot be compared",
        )
    # scikit-learn (the metrics) is imported only when there is a champion to compare with
    from components.evaluate.run import predictions_of_test_split

    info = DatasetInfo.read(dataset_dir)
    print(f"champion {champion_dir.name}: predicting this run's test split to compare")
    return compare(
        predictions_of_test_split(champion_dir / MODEL_DIR, dataset_dir, info.fingerprint),
        predictions_of_test_split(model_dir, dataset_dir, info.fingerprint),
        list(info.class_names),
        policy,
        champion_dir.name,
    )


def decision_lines(decision: ChampionDecision) -> list[str]:
    """The decision table as text: one line per check, then the verdict."""
    if not decision.checks:
        return [decision.verdict]
    lines = [f"{'check':<24} {'champion':>9} {'challenger':>10} {'difference':>10}  interval"]
    for check in decision.checks:
        interval = ""
        if check.low is not None and check.high is not None:
            interval = f"[{_points(check.low)}, {_points(check.high)}] points"
        mark = "" if check.passed else "  FAILED"
        lines.append(
            f"{check.check[:24]:<24} {check.champion:>9.4f} {check.challenger:>10.4f} "
            f"{check.difference:>+10.4f}  {interval}{mark}"
        )
    hidden = decision.classes_below - sum(
        1 for check in decision.checks if check.check.startswith("recall ") and not check.passed
    )
    if hidden > 0:
        lines.append(f"... and {hidden} more classes whose recall fell past the tolerance")
    if decision.mcnemar_p is not None:
        champion_only, challenger_only = decision.discordant
        lines.append(
            f"McNemar exact p = {decision.mcnemar_p:.3g} on {decision.test_images} images "
            f"({champion_only} right by the champion only, {challenger_only} by the "
            "challenger only)"
        )
    lines.append(decision.verdict)
    return lines
