"""One DDP process of a transformers training, as torchrun starts it:
`torchrun --nproc_per_node=N -m components.train.transformers.worker REQUEST.json`.

REQUEST.json holds the arguments of `fine_tune` (components/train/request.py); torchrun's environment says
which process this is (components/train/cluster.py). Process 0 writes the Model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from components.train.cluster import Process
from components.train.request import Request
from components.train.transformers.trainer import run_process


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", help="JSON file with the training's arguments")
    args = parser.parse_args(argv)
    run_process(Request.read(args.request), Process.from_environment())


if __name__ == "__main__":
    main()
