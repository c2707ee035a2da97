"""infra/terraform parses (python-hcl2: the terraform binary may be missing), grants no broad role,
and declares, with a description, every variable it uses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 parses the terraform (dev extra)")

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
FILES = sorted(TERRAFORM.glob("*.tf"))
BROAD_ROLES = re.compile(r"roles/(editor|owner|viewer|iam\.securityAdmin|resourcemanager\..*)$")
# The pipeline service account's project-wide roles; the rest is granted on single resources.
PROJECT_ROLES = {"roles/aiplatform.user", "roles/logging.logWriter"}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(kind: str) -> dict[str, dict[str, Any]]:
    """Every `kind` block of the configuration ("variable", "output", ...) by its label."""
    found: dict[str, dict[str, Any]] = {}
    for path in FILES:
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get(kind, []):
            for label, body in block.items():
                found[unquote(label)] = body
    return found


def resources() -> dict[str, dict[str, Any]]:
    """`type.name` -> body of every resource."""
    found = {}
    for path in FILES:
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    if not name.startswith("__"):
                        found[f"{unquote(kind)}.{unquote(name)}"] = body
    return found


def code(path: Path) -> str:
    """The file without its comments."""
    return re.sub(r"(?m)#.*$", "", path.read_text())


def test_the_configuration_parses():
    assert {p.name for p in FILES} >= {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
    for path in FILES:
        with path.open() as handle:
            assert hcl2.load(handle), path.name


def test_every_variable_used_is_declared_with_a_description():
    declared = blocks("variable")
    used = {name for path in FILES for name in re.findall(r"\bvar\.(\w+)", code(path))}

    assert used <= set(declared), f"used but not declared: {sorted(used - set(declared))}"
    assert set(declared) <= used, f"declared but never used: {sorted(set(declared) - used)}"
    for name, body in declared.items():
        description = unquote(body.get("description", ""))
        assert len(description) > 20, f"variable {name} needs a description that says what it is"
        assert "type" in body, f"variable {name} needs a type"


def test_every_output_says_what_it_is_for():
    outputs = blocks("output")

    assert {"bucket", "service_account", "image_repository", "tensorboard", "submit_flags"} <= set(
        outputs
    )
    for name, body in outputs.items():
        assert len(unquote(body.get("description", ""))) > 15, name


def test_every_referenced_resource_exists():
    declared = set(resources())
    referenced = {
        f"{kind}.{name}"
        for path in FILES
        for kind, name in re.findall(r"\b(google_[a-z0-9_]+)\.([a-z0-9_]+)\b", code(path))
        if not (path.name == "main.tf" and f'"{kind}" "{name}"' in path.read_text())
    }

    assert referenced <= declared, sorted(referenced - declared)


def granted_roles() -> list[tuple[str, str]]:
    """(resource, role) of every IAM grant, the project-wide ones from locals included."""
    grants = [
        (address, unquote(body["role"]))
        for address, body in resources().items()
        if "role" in body and not address.startswith("google_project_iam_member.")
    ]
    with (TERRAFORM / "main.tf").open() as handle:
        parsed = hcl2.load(handle)
    project_roles = [
        unquote(r) for block in parsed["locals"] for r in block.get("project_roles", [])
    ]
    grants += [("google_project_iam_member.pipelines", role) for role in project_roles]
    return grants


def test_no_editor_owner_or_other_broad_role():
    grants = granted_roles()

    assert grants
    for address, role in grants:
        assert not BROAD_ROLES.search(role), f"{address} grants {role}"
    text = "".join(code(path) for path in FILES)
    assert "roles/editor" not in text and "roles/owner" not in text


def test_the_service_account_gets_only_what_runs_need():
    grants = granted_roles()
    project = {role for address, role in grants if address.startswith("google_project_iam")}
    members = resources()

    assert project == PROJECT_ROLES
    # objects of the pipeline-root bucket, images of the repository, and acting as itself
    assert unquote(members["google_storage_bucket_iam_member.pipelines_objects"]["role"]) == (
        "roles/storage.objectUser"
    )
    assert unquote(
        members["google_artifact_registry_repository_iam_member.pipelines_pull"]["role"]
    ) == ("roles/artifactregistry.reader")
    act_as = members["google_service_account_iam_member.pipelines_act_as_itself"]
    assert unquote(act_as["role"]) == "roles/iam.serviceAccountUser"
    assert "google_service_account.pipelines" in act_as["service_account_id"]


def test_the_bucket_is_private_and_in_the_region():
    bucket = resources()["google_storage_bucket.pipeline_root"]

    assert bucket["uniform_bucket_level_access"] is True
    assert unquote(bucket["public_access_prevention"]) == "enforced"
    assert bucket["location"] == "${var.region}"


def test_the_apis_and_the_optional_tensorboard():
    with (TERRAFORM / "main.tf").open() as handle:
        parsed = hcl2.load(handle)
    apis = {unquote(api) for block in parsed["locals"] for api in block.get("apis", [])}
    tensorboard = resources()["google_vertex_ai_tensorboard.training"]

    assert {"aiplatform.googleapis.com", "artifactregistry.googleapis.com"} <= apis
    assert {"storage.googleapis.com", "cloudbuild.googleapis.com", "iam.googleapis.com"} <= apis
    assert "var.create_tensorboard" in tensorboard["count"]
    assert resources()["google_artifact_registry_repository.images"]["format"] == '"DOCKER"'
