"""Data-parallel scaling on this machine: the transformers trainer launched by torchrun with 1 and
with 2 DDP processes (gloo on CPU, NCCL on GPUs), the same step batch, side by side in one run;
then whether Keras trains under MultiWorkerMirroredStrategy at all (two local workers).

Each side is a whole training through `torchrun --standalone --nproc_per_node N` of a tiny
ConvNeXt V2; its throughput is the training images over the median epoch time after the first
epoch (start-up and the first epoch's warm-up are left out). The sides alternate, so a busy
machine slows both alike. On CPU each process computes on one thread, the stand-in for a device
of its own: the ideal ratio is 2, and what it falls short by is what DDP's gradient all-reduce,
the padding and the shared memory bandwidth cost (on a machine with at least 2 free cores).

For comparison, the anchor: NVIDIA's ResNet-50 figures put training on 8 A100s at 7.7x the
throughput of one, a scaling efficiency of 7.7 / 8 = 96 %.

    python benchmarks/scaling.py [--images 512] [--epochs 3] [--rounds 5] [--no-keras]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sides import ROUNDS, alternate
from train_hf import _checkpoint, _make_dataset

ANCHOR = ("NVIDIA ResNet-50, 8x A100 vs 1x A100", 7.7, 8)
# The trainings' environment: with fewer than 2 GPUs the processes train on the CPU (two DDP
# processes cannot share one GPU under NCCL), one thread each, so that each process has a core
# of its own as it would have a device (and no OpenMP thread waits on a descheduled sibling).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
EPOCH_LINE = re.compile(r"^Epoch (\d+)/\d+ - ([\d.]+)s", re.MULTILINE)
KERAS_PROBE = """
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": sys.argv[2:4]},
                                      "task": {"type": "worker", "index": int(sys.argv[1])}})
import numpy as np, tensorflow as tf, keras
strategy = tf.distribute.MultiWorkerMirroredStrategy()
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, (x.sum(1) > 0).astype("int32"))).batch(16).repeat()
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
try:
    model.fit(data, epochs=1, steps_per_epoch=4, verbose=0)
    print("RESULT fit works")
except Exception as error:
    print(f"RESULT fit fails ({type(error).__name__}: {str(error).splitlines()[0][:40]}...)")
print(f"VERSIONS with TensorFlow {tf.__version__}, Keras {keras.__version__}")
"""


def throughput(
    workdir: Path,
    dataset: Path,
    checkpoint: Path,
    processes: int,
    epochs: int,
    batch_size: int,
    run: int,
) -> float:
    """Training images per second of one torchrun training with `processes` processes."""
    from components.common.results import DatasetInfo
    from components.spec import ModelSpec
    from components.train.cluster import SINGLE_NODE, torchrun_command
    from components.train.transformers.trainer import WORKER_MODULE, Request

    spec = ModelSpec(
        name="scaling",
        framework="transformers",
        checkpoint=str(checkpoint),
        epochs=epochs,
        batch_size=batch_size,
    )
    folder = workdir / f"run-{processes}-{run}"
    request = Request(str(dataset), spec, 0, str(folder / "model"), str(folder / "ckpt"))
    path = request.write(folder / "request.json")
    command = torchrun_command(SINGLE_NODE, processes, WORKER_MODULE, [str(path)])
    finished = subprocess.run(command, capture_output=True, text=True, check=False, env=ENV)
    if finished.returncode != 0:
        raise SystemExit(f"training with {processes} processes failed:\n{finished.stderr[-3000:]}")
    seconds = [float(s) for epoch, s in EPOCH_LINE.findall(finished.stdout) if int(epoch) > 1]
    return DatasetInfo.read(dataset).num_examples["train"] / statistics.median(seconds)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [int(probe.getsockname()[1]) for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def keras_multi_worker(workdir: Path) -> str:
    """What Keras's fit does under MultiWorkerMirroredStrategy with two local workers."""
    script = workdir / "keras_probe.py"
    script.write_text(KERAS_PROBE)
    addresses = [f"localhost:{port}" for port in _free_ports(2)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(index), *addresses],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    lines = [line for line in outputs[0].splitlines() if line.startswith(("RESULT", "VERSIONS"))]
    return " ".join(line.split(" ", 1)[1] for line in lines) or json.dumps(outputs[0][-300:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3, help="per training (>= 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="the step batch")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternations (>= {ROUNDS})")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras probe")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2: the first epoch is the warm-up")

    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        ENV["CUDA_VISIBLE_DEVICES"] = ""
    device = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus >= 2 else "CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        with contextlib.redirect_stdout(sys.stderr):  # ingest's progress: the table alone on stdout
            dataset = _make_dataset(workdir, args.images, 32)
            checkpoint = _checkpoint(workdir / "convnextv2", "convnextv2")

        def side(processes: int):
            def measure(run: int) -> float:
                return throughput(
                    workdir, dataset, checkpoint, processes, args.epochs, args.batch_size, run
                )

            return measure

        sides = alternate({"1 process": side(1), "2 processes": side(2)}, args.rounds)
        print(
            f"DDP scaling of the transformers trainer on {device} ({cores} cores; tiny ConvNeXt V2, "
            f"{args.images} images 32x32, step batch {args.batch_size}, torchrun --standalone):"
        )
        for name in sides.values:
            print(f"  {name:12s}: {sides.median(name):8.0f} images/s")
        print(f"  ratio 2/1   : {sides.ratio('2 processes', '1 process')}")
        name, speedup, devices = ANCHOR
        print(
            f"anchor: {name}: {speedup}x ({speedup / devices:.0%} efficiency); here "
            + (
                "one GPU per process: the ideal ratio is 2"
                if gpus >= 2
                else "one thread per process on a CPU: the ideal ratio is 2 (with 2 free cores)"
            )
        )
        if not args.no_keras:
            print(
                f"keras MultiWorkerMirroredStrategy, 2 local workers: {keras_multi_worker(workdir)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
