"""The server as a container on a cluster or cloud: one command, one port, two descriptions.

- `inference_service`: a KServe `InferenceService` (serving.kserve.io/v1beta1) whose custom
  predictor runs the server in our cpu image, in RawDeployment mode (a Deployment and a Service;
  no Knative), reading the model from the registry volume;
- `vertex_container_spec`: the Vertex AI Model's `containerSpec` (custom serving container):
  the same image and command; Vertex AI passes the port, routes and model location as
  AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI.

Both answer the KServe v1 routes of the registered name, so one client works on every target.
"""

from __future__ import annotations

import re
from typing import Any

from components.serve.protocol import kserve_routes

PORT = 8080
COMMAND = ["python", "-m", "components.serve"]
KSERVE_API = "serving.kserve.io/v1beta1"
# The annotation that makes KServe create a plain Deployment instead of a Knative Service.
DEPLOYMENT_MODE = {"serving.kserve.io/deploymentMode": "RawDeployment"}
# KServe's storage and agent logic looks for the predictor's container by this name.
CONTAINER_NAME = "kserve-container"
MODEL_LABEL = "imgclf_model"
# An InferenceService's name becomes a Service's: a DNS-1035 label.
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def server_args(model: str, name: str, port: int | None = PORT) -> list[str]:
    """The serve command's arguments in a container: all interfaces, the given port (None:
    AIP_HTTP_PORT's), the routes of `name`."""
    args = ["--host", "0.0.0.0", "--name", name]
    if model:
        args = ["--model", model, *args]
    return args if port is None else [*args, "--port", str(port)]


def inference_service(
    name: str,
    image: str,
    *,
    registry_pvc: str,
    registry_mount: str,
    version: str = "",
    namespace: str = "kubeflow",
    image_pull_policy: str = "IfNotPresent",
    cpu: str = "1",
    memory: str = "2Gi",
) -> dict[str, Any]:
    """The InferenceService serving registered model `name` from the registry volume: its
    `version` (vN), or with none the champion the registry names when the pod starts."""
    ready_path, _ = kserve_routes(name)
    model = f"{registry_mount}/{name}" + (f"/{version}" if version else "")
    if not DNS_LABEL.fullmatch(name):
        raise ValueError(
            f"register.name {name!r} cannot name an InferenceService: use at most 63 lower-case "
            "letters, digits and '-', starting with a letter"
        )

    def probe(**settings: int) -> dict[str, Any]:
        return {"httpGet": {"path": ready_path, "port": PORT}, "periodSeconds": 5, **settings}

    labels = {MODEL_LABEL: name}
    if version:
        labels["registry_version"] = version
    return {
        "apiVersion": KSERVE_API,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(DEPLOYMENT_MODE),
            "labels": labels,
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 1,
                "containers": [
                    {
                        "name": CONTAINER_NAME,
                        "image": image,
                        "imagePullPolicy": image_pull_policy,
                        "command": list(COMMAND),
                        "args": server_args(model, name),
                        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                        # the model loads before the port opens: allow a slow first start
                        "startupProbe": probe(failureThreshold=120),
                        "readinessProbe": probe(),
                        "resources": {
                            "requests": {"cpu": cpu, "memory": memory},
                            "limits": {"memory": memory},
                        },
                        "volumeMounts": [
                            {"name": "registry", "mountPath": registry_mount, "readOnly": True}
                        ],
                    }
                ],
                "volumes": [
                    {
                        "name": "registry",
                        "persistentVolumeClaim": {"claimName": registry_pvc, "readOnly": True},
                    }
                ],
            }
        },
    }


def vertex_container_spec(name: str, image: str) -> dict[str, Any]:
    """The `containerSpec` of a Vertex AI Model served by our server (the field names of the
    API's ModelContainerSpec). The model's files are Vertex's copy of the artifact URI."""
    ready_path, predict_path = kserve_routes(name)
    return {
        "imageUri": image,
        "command": list(COMMAND),
        "args": server_args("", name, port=None),
        "ports": [{"containerPort": PORT}],
        "healthRoute": ready_path,
        "predictRoute": predict_path,
    }
