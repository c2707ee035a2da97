"""`python -m pipelines.serving`: the KServe InferenceService that serves an experiment's
registered model on the kind cluster (the kfp target), as YAML.

The model is read from the registry volume the kfp target's register step writes
(`kfp.registry_pvc`, mounted at /mnt/registry): the champion its registry names when the pod
starts, or `--version vN`. The image is the experiment's `images.cpu`, pulled with
`kfp.image_pull_policy`. `make kind-serve MODEL=<experiment>` writes it and applies it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from components.register.folders import VERSION
from components.serve.manifests import inference_service
from pipelines.config import ConfigError, Experiment, load_experiment
from pipelines.targets.kfp.cluster import KFP_NAMESPACE, REGISTRY_MOUNT

EXIT_OK, EXIT_ERROR = 0, 2


def kind_inference_service(experiment: Experiment, version: str = "") -> dict[str, Any]:
    """The InferenceService of `experiment`'s registered model (`version`, or its champion)."""
    registry_pvc = experiment.kfp.registry_pvc
    if registry_pvc is None:
        raise ConfigError(
            "kfp.registry_pvc is null: the registered versions live only in the register step's "
            "pod; set kfp.registry_pvc (make kind-up creates imgclf-registry) to serve them"
        )
    return inference_service(
        experiment.registration.name,
        experiment.images.cpu,
        registry_pvc=registry_pvc,
        registry_mount=REGISTRY_MOUNT,
        version=version,
        namespace=KFP_NAMESPACE,
        image_pull_policy=experiment.kfp.image_pull_policy,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.serving",
        description="Write the KServe InferenceService serving an experiment's registered model "
        "on the kind cluster.",
    )
    parser.add_argument(
        "--experiment", required=True, help="name in pipelines/experiments or a YAML path"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--version", default="", help="serve this version (vN), not the champion")
    parser.add_argument("--output", type=Path, help="write the YAML here (default: stdout)")
    args = parser.parse_args(argv)
    if args.version and not VERSION.fullmatch(args.version):
        print(
            f"error: --version {args.version!r}: name a version as v<N>, e.g. v3", file=sys.stderr
        )
        return EXIT_ERROR
    try:
        manifest = kind_inference_service(
            load_experiment(args.experiment, args.overrides), args.version
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    text = yaml.safe_dump(manifest, sort_keys=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
