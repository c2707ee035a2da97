"""Image tags to digests, through the registry's own API, before a cluster run is compiled.

A tag can be pushed again; a digest names the content. The vertex and kfp submits compile with
`host/name@sha256:...` in place of `host/name:tag`, so the backend's cache keys on what the image
holds (kubeflow/pipelines #13862) and the run records exactly what ran. `--compile-only` does not
call this: it stays offline and keeps the tags.

The lookup is the OCI distribution API: `GET https://HOST/v2/NAME/manifests/TAG`, whose
`Docker-Content-Digest` header is the digest (the sha256 of the manifest, an index for multi-arch
images). A registry that answers 401 with a Bearer challenge (Artifact Registry, Docker Hub,
GHCR, ...) gets the token flow of the Docker registry spec, with the credentials of `credentials`.
Images that name no registry host (e.g. `image-classification-cpu:latest`, loaded into kind) have
no registry to ask and stay as they are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PreflightError, SubmitError

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# The first path component is a registry host when it has a dot or a port, or is localhost.
HOST = re.compile(r"^(localhost|[^/]+\.[^/]+|[^/]+:\d+)(?::\d+)?$")
LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+)(:\d+)?$")  # plain HTTP, as docker allows
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
GOOGLE_HOSTS = re.compile(r"(^|\.)(gcr\.io|pkg\.dev)$")
Credentials = Callable[[str], "tuple[str, str] | None"]  # registry host -> (user, secret)


@dataclass(frozen=True)
class Reference:
    host: str
    name: str
    tag: str

    @property
    def base_url(self) -> str:
        scheme = "http" if LOOPBACK.match(self.host) else "https"
        return f"{scheme}://{self.host}"

    def pinned(self, digest: str) -> str:
        return f"{self.host}/{self.name}@{digest}"


def parse(image: str) -> Reference | None:
    """The registry reference of a tagged image; None when it is pinned or names no registry."""
    if "@" in image:
        return None
    first, _, rest = image.partition("/")
    if not rest or not HOST.match(first):
        return None
    name, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return Reference(first, name, tag)


def resolve_images(
    images: dict[str, str],
    credentials: Credentials | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """field -> image with every tag that names a registry replaced by its digest."""
    credentials = credentials or default_credentials
    resolved: dict[str, str] = {}
    found: dict[str, str] = {}  # one lookup per distinct image
    for field, image in images.items():
        reference = parse(image)
        if reference is None:
            resolved[field] = image
            continue
        if image not in found:
            found[image] = reference.pinned(_digest(field, image, reference, credentials, timeout))
        resolved[field] = found[image]
    return resolved


def _digest(
    field: str, image: str, reference: Reference, credentials: Credentials, timeout: float
) -> str:
    url = f"{reference.base_url}/v2/{reference.name}/manifests/{reference.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for attempt in ("anonymous", "token"):
        request = urllib.request.Request(url, headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read()
                digest = response.headers.get("Docker-Content-Digest")
                break
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and attempt == "anonymous":
                challenge = exc.headers.get("WWW-Authenticate", "")
                token = _token(challenge, reference, credentials, opener, timeout)
                headers["Authorization"] = f"Bearer {token}"
                continue
            raise _refusal(field, image, exc) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SubmitError(
                f"{field}: cannot reach the registry {reference.host} to pin {image} to a "
                f"digest ({reason}); check the network, or give {field} as NAME@sha256:DIGEST"
            ) from None
    # The digest is the sha256 of the manifest; a registry that leaves out the header still
    # answers with the manifest itself.
    digest = digest or "sha256:" + hashlib.sha256(body).hexdigest()
    if not DIGEST.match(digest):
        raise SubmitError(f"{field}: the registry {reference.host} answered digest {digest!r}")
    return digest


def _token(
    challenge: str,
    reference: Reference,
    credentials: Credentials,
    opener: urllib.request.OpenerDirector,
    timeout: float,
) -> str:
    """A Bearer token for pulling `reference`, from the realm its registry's challenge names."""
    scheme, _, params = challenge.partition(" ")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
    if scheme.lower() != "bearer" or "realm" not in fields:
        raise PreflightError(
            f"the registry {reference.host} asks for {scheme or 'an unknown'} authentication, "
            "which this lookup does not speak; give the image as NAME@sha256:DIGEST"
        )
    query = {"scope": f"repository:{reference.name}:pull"}
    if "service" in fields:
        query["service"] = fields["service"]
    request = urllib.request.Request(fields["realm"] + "?" + urllib.parse.urlencode(query))
    secret = credentials(reference.host)
    if secret:
        user_and_secret = f"{secret[0]}:{secret[1]}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(user_and_secret).decode())
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise PreflightError(
            f"the registry {reference.host} refused a pull token for {reference.name} (HTTP "
            f"{exc.code}); {_login_hint(reference.host)}"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise SubmitError(f"no pull token from {fields['realm']} ({exc})") from None
    token = answer.get("token") or answer.get("access_token")
    if not token:
        raise SubmitError(f"{fields['realm']} answered without a token")
    return str(token)


def _refusal(field: str, image: str, exc: urllib.error.HTTPError) -> PreflightError:
    host = image.split("/", 1)[0]
    if exc.code == 404:
        return PreflightError(
            f"{field} is {image}, which the registry does not have (HTTP 404); push it "
            "(make images) or fix the tag"
        )
    if exc.code in (401, 403):
        return PreflightError(
            f"{field}: not allowed to read {image} (HTTP {exc.code}); {_login_hint(host)}"
        )
    return PreflightError(f"{field}: the registry answered HTTP {exc.code} for {image}")


def _login_hint(host: str) -> str:
    if GOOGLE_HOSTS.search(host.split(":")[0]):
        return "run `gcloud auth application-default login` as someone who may read the repository"
    return f"run `docker login {host}`"


def default_credentials(host: str) -> tuple[str, str] | None:
    """Google registries: an access token of the application default credentials; others: the
    `auths` entry of ~/.docker/config.json (credential helpers are not read); else anonymous."""
    if GOOGLE_HOSTS.search(host.split(":")[0]):
        try:
            import google.auth
            import google.auth.transport.requests

            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
            credentials.refresh(google.auth.transport.requests.Request())
        except Exception:  # no ADC, or no google-auth: ask anonymously, the error says the rest
            return None
        return "oauth2accesstoken", str(credentials.token)
    config = Path.home() / ".docker" / "config.json"
    try:
        auth = json.loads(config.read_text())["auths"][host]["auth"]
        user, _, secret = base64.b64decode(auth).decode().partition(":")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return user, secret
