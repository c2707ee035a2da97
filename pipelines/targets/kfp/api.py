"""The KFP API the `kfp` target submits to: a health check that fails fast, one line for each
error of kfp.Client, and kfp.Client's own output kept off stdout."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

from pipelines.errors import SubmitError

HEALTHZ = "/apis/v2beta1/healthz"
KIND_HINT = "is the cluster up and its UI port-forwarded? `make kind-up` does both"


def check_api(host: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET the KFP health endpoint; a clear SubmitError when it is not a healthy KFP API.

    kfp.Client's own check retries five times with tracebacks in the log; this one fails fast.
    Proxies from the environment are ignored, as kfp.Client ignores them.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(host + HEALTHZ, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SubmitError(
                f"{host} is not a KFP API ({HEALTHZ} answered 404); --host is the KFP UI or API "
                "address, e.g. http://localhost:8080 after `make kind-up`"
            ) from None
        raise SubmitError(
            f"the KFP API at {host} is not ready ({HEALTHZ} answered HTTP {exc.code} "
            f"{exc.reason}); wait until `kubectl -n kubeflow get pods` shows every pod ready"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = "connection refused" if isinstance(reason, ConnectionRefusedError) else str(reason)
        raise SubmitError(f"cannot reach the KFP API at {host} ({text}); {KIND_HINT}") from None
    except (TimeoutError, OSError) as exc:
        raise SubmitError(
            f"no answer from the KFP API at {host} within {timeout:.0f} s ({exc}); {KIND_HINT}"
        ) from None
    try:
        health = json.loads(body or b"{}")
    except ValueError:
        health = None
    if not isinstance(health, dict):
        raise SubmitError(
            f"{host}{HEALTHZ} did not answer JSON: {host} is not a KFP API; --host is the KFP UI "
            "or API address, e.g. http://localhost:8080 after `make kind-up`"
        )
    return health


def describe_error(exc: BaseException, host: str) -> str:
    """One line for an error of kfp.Client: what went wrong and what to check."""
    import kfp_server_api
    import urllib3

    if isinstance(exc, kfp_server_api.ApiException):
        detail = ""
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(exc.body or "")
            if isinstance(body, dict):
                detail = str(body.get("message") or body.get("error") or "")
        detail = detail or str(exc.body or "").strip()[:300]
        return f"the KFP API at {host} refused the request: HTTP {exc.status} {exc.reason}" + (
            f": {detail}" if detail else ""
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError):
        reason = getattr(exc, "reason", None) or exc
        return f"lost the connection to the KFP API at {host} ({reason}); {KIND_HINT}"
    return f"KFP at {host}: {exc}"


@contextlib.contextmanager
def client_output_to_stderr() -> Iterator[None]:
    """kfp.Client prints links on stdout and warns about old servers; stdout is the result's."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        yield


def warn_on_version_mismatch(host: str, health: dict[str, Any]) -> None:
    import kfp

    server = str(health.get("tag_name") or "").lstrip("v")
    if server and server.split(".")[:2] != kfp.__version__.split(".")[:2]:
        print(
            f"warning: KFP at {host} is {server}, this SDK is {kfp.__version__}; "
            "infra/kind installs the matching version",
            file=sys.stderr,
        )
