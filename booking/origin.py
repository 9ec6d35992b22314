"""The WebSockets' Origin check: Channels' own, with a refusal that costs the channel layer nothing.

Channels' ``WebsocketDenier`` is a consumer of the default channel layer: each
refused socket opened a layer channel and held a Redis receive until it closed
(and that receive could outlive its cancel, booking/aio.py).
"""

from __future__ import annotations

from urllib.parse import ParseResult, urlparse

from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator, WebsocketDenier


class OriginRefusedConsumer(WebsocketDenier):
    """Refuses the handshake (403), with no channel-layer channel."""

    channel_layer_alias = None


class LayerlessOriginValidator(OriginValidator):
    """Channels' ``OriginValidator``, refusing with :class:`OriginRefusedConsumer`."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("LayerlessOriginValidator is for WebSocket connections only")
        if self.valid_origin(_origin(scope)):
            return await self.application(scope, receive, send)
        return await OriginRefusedConsumer()(scope, receive, send)


def _origin(scope) -> ParseResult | None:
    """The Origin header, parsed as Channels' validator parses it (None when absent or not latin-1)."""
    origin = None
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                origin = urlparse(value.decode("latin1"))
            except UnicodeDecodeError:
                pass
    return origin


def allowed_hosts_origin_validator(application) -> LayerlessOriginValidator:
    """Channels' ``AllowedHostsOriginValidator`` (the origins it allows: ALLOWED_HOSTS, localhost
    while DEBUG leaves it empty), refusing with :class:`OriginRefusedConsumer`."""
    return LayerlessOriginValidator(application, AllowedHostsOriginValidator(application).allowed_origins)
