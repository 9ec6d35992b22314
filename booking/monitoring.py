"""``/metrics``: the Prometheus scrape, for callers the settings let in.

A caller is let in by ``Authorization: Bearer <METRICS_TOKEN>`` (when the token
is set), or by connecting from an address in ``METRICS_ALLOWED_NETWORKS``
(default: this machine only). The address is the connection's (``REMOTE_ADDR``),
never a forwarded header a client could write: Prometheus scrapes each server
directly, not through the load balancer. Anyone else gets 403.

With ``PROMETHEUS_MULTIPROC_DIR`` the scrape sums the files of every process
that shares the folder (prometheus_client's multiprocess mode); without it,
it shows this process alone.
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import os
import re
from functools import cache

import prometheus_client
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, multiprocess

from .metrics import BacklogCollector

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


@cache
def _allowed_networks(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


def is_allowed(request: HttpRequest) -> bool:
    """A good bearer token, or else a connection from an allowed network (a wrong token never is)."""
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, given = header.partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def _forget_dead_processes(path: str) -> None:
    """Drop the live gauges (watchers) of processes that are gone: prometheus_client leaves
    that bookkeeping to the server's worker-exit hook, which granian and the ASGI servers do not have."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_GAUGE_FILE.search(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:  # alive, another user's
            pass


def scrape() -> bytes:
    """The metrics in Prometheus' text format: the processes' values, then the backlogs."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        _forget_dead_processes(path)
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes, path)
        text = prometheus_client.generate_latest(processes)
    else:
        text = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    backlogs = CollectorRegistry()
    backlogs.register(BacklogCollector())
    return text + prometheus_client.generate_latest(backlogs)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not is_allowed(request):
        return JsonResponse(
            {"code": "forbidden", "detail": "Metrics need METRICS_TOKEN as a bearer token, or an allowed network."},
            status=403,
        )
    return HttpResponse(scrape(), content_type=prometheus_client.CONTENT_TYPE_LATEST)
