"""Image tags pinned to digests through the OCI registry API, against a stub registry on 127.0.0.1
(tests/pipelines/conftest.py): the request the lookup sends, the token flow, and what it says when
the registry cannot help."""

from __future__ import annotations

import socket

import pytest

from pipelines.targets.base import PreflightError, SubmitError
from pipelines.targets.digests import MANIFEST_TYPES, Reference, parse, resolve_images


def no_credentials(host: str) -> None:
    return None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            "us-central1-docker.pkg.dev/p/imgclf/cpu:0123abc",
            Reference("us-central1-docker.pkg.dev", "p/imgclf/cpu", "0123abc"),
        ),
        ("localhost:5001/imgclf/cpu", Reference("localhost:5001", "imgclf/cpu", "latest")),
        ("ghcr.io/org/img:v1.2", Reference("ghcr.io", "org/img", "v1.2")),
        ("image-classification-cpu:latest", None),  # loaded into kind: no registry to ask
        ("library/python:3.11", None),
        ("gcr.io/p/cpu@sha256:" + "a" * 64, None),  # pinned already
    ],
)
def test_which_images_have_a_registry_tag_to_pin(image, expected):
    assert parse(image) == expected


def test_a_tag_becomes_the_digest_the_registry_answers(registry):
    image = f"{registry.host}/imgclf/cpu:0123abc"

    pinned = resolve_images({"images.cpu": image}, no_credentials)

    assert pinned == {
        "images.cpu": f"{registry.host}/imgclf/cpu@{registry.digest('imgclf/cpu', '0123abc')}"
    }
    (request,) = registry.manifests()
    assert request["path"] == "/v2/imgclf/cpu/manifests/0123abc"
    # an index for multi-arch images: its digest, not one platform's
    assert request["headers"]["accept"] == MANIFEST_TYPES
    assert MANIFEST_TYPES.startswith("application/vnd.oci.image.index.v1+json")
    assert "authorization" not in request["headers"]


def test_pinned_and_registry_less_images_are_left_alone_without_a_request(registry):
    images = {
        "images.cpu": "image-classification-cpu:latest",
        "images.gpu": f"{registry.host}/imgclf/gpu@sha256:" + "c" * 64,
    }

    assert resolve_images(images, no_credentials) == images
    assert registry.requests == []


def test_one_lookup_per_distinct_image(registry):
    image = f"{registry.host}/imgclf/cpu:1"

    pinned = resolve_images({"images.cpu": image, "images.gpu": image}, no_credentials)

    assert pinned["images.cpu"] == pinned["images.gpu"]
    assert len(registry.manifests()) == 1


def test_without_the_header_the_digest_is_the_manifests_sha256(registry):
    registry.digest_header = False

    pinned = resolve_images({"images.cpu": f"{registry.host}/imgclf/cpu:1"}, no_credentials)

    assert pinned["images.cpu"].endswith("@" + registry.digest("imgclf/cpu", "1"))


def test_a_bearer_challenge_gets_a_pull_token_with_the_credentials(registry):
    registry.token, registry.login = "pull-token-1", ("oauth2accesstoken", "secret-1")

    pinned = resolve_images(
        {"images.cpu": f"{registry.host}/p/imgclf/cpu:1"}, lambda host: registry.login
    )

    assert pinned["images.cpu"].endswith(registry.digest("p/imgclf/cpu", "1"))
    first, token, second = registry.requests
    assert "authorization" not in first["headers"]
    assert token["path"].startswith("/token?")
    assert "scope=repository%3Ap%2Fimgclf%2Fcpu%3Apull" in token["path"]
    assert "service=stub-registry" in token["path"]
    assert token["headers"]["authorization"].startswith("Basic ")
    assert second["headers"]["authorization"] == "Bearer pull-token-1"


def test_a_refused_token_says_how_to_log_in(registry):
    registry.token, registry.login = "t", ("user", "right")

    with pytest.raises(
        PreflightError, match=rf"refused a pull token .* run `docker login {registry.host}`"
    ):
        resolve_images(
            {"images.cpu": f"{registry.host}/imgclf/cpu:1"}, lambda host: ("user", "wrong")
        )


def test_an_image_the_registry_lacks_names_the_field_and_the_fix(registry):
    registry.missing.add("imgclf/gpu:0123abc")

    with pytest.raises(PreflightError) as caught:
        resolve_images({"images.gpu": f"{registry.host}/imgclf/gpu:0123abc"}, no_credentials)

    assert "images.gpu is" in str(caught.value)
    assert "does not have (HTTP 404); push it (make images) or fix the tag" in str(caught.value)


def test_an_unreachable_registry_is_a_submit_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(SubmitError, match=r"images.cpu: cannot reach the registry 127.0.0.1:\d+"):
        resolve_images({"images.cpu": f"127.0.0.1:{port}/imgclf/cpu:1"}, no_credentials, timeout=5)


def test_default_credentials_read_the_docker_config(tmp_path, monkeypatch):
    import base64
    import json

    from pipelines.targets.digests import default_credentials

    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(b"robot:s3cret").decode()
    config.write_text(json.dumps({"auths": {"registry.example:5000": {"auth": auth}}}))
    monkeypatch.setenv("HOME", str(tmp_path))

    assert default_credentials("registry.example:5000") == ("robot", "s3cret")
    assert default_credentials("other.example") is None  # anonymous


def test_default_credentials_of_google_registries_are_an_adc_access_token(monkeypatch):
    import google.auth

    from pipelines.targets.digests import default_credentials

    class Credentials:
        token = None

        def refresh(self, request: object) -> None:
            self.token = "access-token-1"

    asked: list[str] = []

    def adc(scopes: list[str]) -> tuple[Credentials, str]:
        asked.extend(scopes)
        return Credentials(), "my-project"

    monkeypatch.setattr(google.auth, "default", adc)

    assert default_credentials("us-central1-docker.pkg.dev") == (
        "oauth2accesstoken",
        "access-token-1",
    )
    assert default_credentials("gcr.io") == ("oauth2accesstoken", "access-token-1")
    assert asked == ["https://www.googleapis.com/auth/cloud-platform"] * 2
