"""Reading requests' environment settings once per server instead of on every request.

`requests.Session.request` asks the environment, for every request, for the proxy to use
(`HTTPS_PROXY`, `NO_PROXY`… through `urllib.request.getproxies`, which scans every
variable twice) and the CA bundle (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`): 0.2 - 0.5 ms
of CPU a request, about a fifth of what a full reconcile's 3,000 reads cost the bridge
(bench/README.md). The environment of a running bridge does not change, so the answer for
one scheme and host is worked out once, by requests itself, and reused.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests


def settle_environment(session: requests.Session) -> None:
    """Make `session` work out its environment settings once per scheme, host and the
    request's own (proxies, stream, verify, cert), with requests' rules."""
    merge: Any = session.merge_environment_settings
    known: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def merged(url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        given = None if proxies is None else tuple(sorted(proxies.items()))
        key = (*urlsplit(url)[:2], given, stream, verify, cert)
        with lock:
            found = known.get(key)
            if found is None:
                mine = None if proxies is None else dict(proxies)
                found = known[key] = merge(url, mine, stream, verify, cert)
        if proxies is not None:
            for scheme, proxy in found["proxies"].items():
                proxies.setdefault(scheme, proxy)  # as requests' own merge does
        return {**found, "proxies": dict(found["proxies"])}

    setattr(session, "merge_environment_settings", merged)  # noqa: B010 - typed stubs differ
