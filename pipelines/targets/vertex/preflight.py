"""The vertex preflight: what can be checked without the network before a run is submitted
(project, region, bucket, service account, registry images, accelerator for the region and the
machine, aliases, serving images, the vertex extra). Problems raise one PreflightError naming
each and how to fix it (exit code 2, nothing submitted); doubts come back as warnings."""

from __future__ import annotations

import re

from pipelines.config import ACCELERATORS_BY_REGION, G2_GPUS, MACHINE_FAMILIES, Experiment
from pipelines.errors import PreflightError, require_gcpc
from pipelines.targets.vertex.hardware import accelerator_count, uses_custom_job
from pipelines.targets.vertex.images import REGISTRY_HOST, image_pin, used_images

# Vertex AI Model Registry version aliases.
ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
SERVICE_ACCOUNT = re.compile(r"[^@\s]+@[^@\s]+\.gserviceaccount\.com")
NETWORK = re.compile(r"projects/\d+/global/networks/[^/]+")
KMS_KEY = re.compile(r"projects/[^/]+/locations/(?P<region>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")


def preflight(experiment: Experiment) -> list[str]:
    """Check, without the network, that the run can be submitted. Returns warnings; raises
    PreflightError naming every problem and how to fix it."""
    warnings: list[str] = []
    problems = _missing_settings(experiment)
    problems += _image_problems(experiment, warnings)
    problems += _gcp_problems(experiment)
    problems += _accelerator_problems(experiment, warnings)
    problems += _registration_problems(experiment, warnings)
    try:
        require_gcpc()
        from google.cloud import aiplatform  # noqa: F401
    except PreflightError as exc:
        problems.append(str(exc))
    except ImportError:
        problems.append(
            "--target vertex needs the vertex extra (google-cloud-aiplatform is missing): "
            "pip install -e '.[vertex]'"
        )
    if problems:
        raise PreflightError("\n".join(problems))
    return warnings


def _missing_settings(experiment: Experiment) -> list[str]:
    missing = [
        f"gcp.{name}"
        for name in ("project", "region", "bucket", "service_account")
        if not getattr(experiment.gcp, name)
    ]
    if not missing:
        return []
    return [
        f"--target vertex needs {', '.join(missing)}; set them in the experiment or with "
        f"--set (e.g. --set gcp.project=my-project --set gcp.bucket=gs://my-bucket)"
    ]


def _gcp_problems(experiment: Experiment) -> list[str]:
    gcp = experiment.gcp
    problems: list[str] = []
    if gcp.service_account and not SERVICE_ACCOUNT.fullmatch(gcp.service_account):
        problems.append(
            f"gcp.service_account is {gcp.service_account!r}; use the service account's "
            "email, e.g. imgclf-pipelines@PROJECT.iam.gserviceaccount.com "
            "(terraform output service_account)"
        )
    if gcp.network and not NETWORK.fullmatch(gcp.network):
        problems.append(
            f"gcp.network is {gcp.network!r}; use projects/PROJECT_NUMBER/global/networks/NAME "
            "(the project number, not its ID)"
        )
    if gcp.encryption_key:
        key = KMS_KEY.fullmatch(gcp.encryption_key)
        if not key:
            problems.append(
                f"gcp.encryption_key is {gcp.encryption_key!r}; use projects/PROJECT/"
                "locations/REGION/keyRings/RING/cryptoKeys/KEY"
            )
        elif key["region"] != gcp.region:
            problems.append(
                f"gcp.encryption_key is in {key['region']} but the run is in {gcp.region}; "
                "Vertex AI needs a key in the run's region"
            )
    return problems


def _image_problems(experiment: Experiment, warnings: list[str]) -> list[str]:
    problems: list[str] = []
    defaults = type(experiment.images)().model_dump()
    for field, image in used_images(experiment).items():
        if image in defaults.values():
            problems.append(
                f"{field} is {image}, the local default image; build and push the images "
                f"(make images) and set {field}=REGION-docker.pkg.dev/PROJECT/REPOSITORY/"
                f"{field.rsplit('.', 1)[-1]}:TAG"
            )
        elif not REGISTRY_HOST.match(image):
            problems.append(
                f"{field} is {image}, which names no registry; Vertex AI pulls images by "
                f"registry path, e.g. REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG"
            )
        elif image_pin(image) == ("tag", "latest") and field.startswith("images."):
            warnings.append(
                f"{field} is {image}: a moving tag; pin the git commit tag or a digest so "
                "the run is reproducible"
            )
    return problems


def _registration_problems(experiment: Experiment, warnings: list[str]) -> list[str]:
    registration = experiment.registration
    problems: list[str] = []
    for alias in registration.aliases:
        if not ALIAS.fullmatch(alias):
            problems.append(
                f"register.aliases: {alias!r} is not a Vertex AI version alias; use "
                "lower-case letters first and last, then letters, digits and '-' "
                "(e.g. production, candidate-2)"
            )
    return problems


def _accelerator_problems(experiment: Experiment, warnings: list[str]) -> list[str]:
    resources = experiment.resources.vertex
    region = experiment.gcp.region
    accelerator = resources.accelerator
    problems: list[str] = []
    if accelerator:
        offered = ACCELERATORS_BY_REGION.get(region)
        if offered is None:
            warnings.append(
                f"gcp.region {region} is not in the accelerator table "
                f"(pipelines/config/accelerators.py); not checking that it offers {accelerator}"
            )
        elif accelerator not in offered:
            regions = sorted(
                r for r, types in ACCELERATORS_BY_REGION.items() if accelerator in types
            )
            problems.append(
                f"resources.vertex.accelerator {accelerator} is not offered for Vertex AI "
                f"training in {region}; use a region that offers it ({', '.join(regions)}) "
                f"or one of: {', '.join(sorted(offered))}"
            )
    if not accelerator or not uses_custom_job(experiment):
        return problems
    return problems + _machine_problems(experiment, accelerator)


def _machine_problems(experiment: Experiment, accelerator: str) -> list[str]:
    """A custom job runs on the named machine type: it must carry the accelerator."""
    resources = experiment.resources.vertex
    machine = resources.machine_type
    families = MACHINE_FAMILIES[accelerator]
    if not machine.startswith(families):
        return [
            f"resources.vertex.machine_type {machine} does not carry {accelerator}; use a "
            f"{' or '.join(f + '*' for f in families)} machine type"
        ]
    count = accelerator_count(resources)
    per_machine = re.search(r"-(\d+)[gt]$", machine)
    if resources.is_tpu and per_machine and int(per_machine[1]) != count:
        return [
            f"resources.vertex.tpu_topology {resources.tpu_topology} is {count} chips but "
            f"{machine} has {per_machine[1]}; the train step is one worker, so use "
            f"{families[0]}{count}t (a single-host slice)"
        ]
    if not resources.is_tpu and per_machine and int(per_machine[1]) != count:
        return [
            f"resources.vertex.count is {count} but {machine} has {per_machine[1]} "
            f"{accelerator}; set count: {per_machine[1]} or pick the machine with {count}"
        ]
    if machine.startswith("g2-standard-"):
        cpus = int(machine.rsplit("-", 1)[1]) if machine.rsplit("-", 1)[1].isdigit() else 0
        if cpus in G2_GPUS and G2_GPUS[cpus] != count:
            return [
                f"resources.vertex.count is {count} but {machine} has {G2_GPUS[cpus]} "
                f"{accelerator}; set count: {G2_GPUS[cpus]} or pick the g2 machine with {count}"
            ]
    return []
