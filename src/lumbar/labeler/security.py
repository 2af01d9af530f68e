"""The FaLa app's defences that sit outside its routes: response headers, the request body
limit, and the failed-login throttle (see `lumbar.labeler.app` for the security model)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "MAX_BODY", "SECURITY_HEADERS", "BodyLimit", "BodyTooLargeError", "LoginThrottle"]

MAX_BODY = 64 * 1024
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class LoginThrottle:
    """Failed logins per client address and per user name; too many → refuse for a while.

    After `free` failures within `window` seconds, each further failure doubles the wait
    (from 2 s up to `max_delay`); a success clears the name's and address's record.
    """

    def __init__(self, free: int = 5, window: float = 900.0, max_delay: float = 300.0) -> None:
        self.free, self.window, self.max_delay = free, window, max_delay
        self._failures: dict[str, list[float]] = {}

    def wait(self, keys: list[str], now: float | None = None) -> float:
        """Seconds the client must still wait before another attempt (0 when none)."""
        now = time.monotonic() if now is None else now
        longest = 0.0
        for key in keys:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window]
            self._failures[key] = recent
            extra = len(recent) - self.free
            if extra >= 0 and recent:
                delay = min(self.max_delay, 2.0 ** (extra + 1))
                longest = max(longest, recent[-1] + delay - now)
        return max(0.0, longest)

    def fail(self, keys: list[str], now: float | None = None) -> None:
        """Record one failed attempt."""
        now = time.monotonic() if now is None else now
        if len(self._failures) > 10_000:  # bounded memory under a flood of made-up names
            self._failures = {
                k: v for k, v in self._failures.items() if v and now - v[-1] < self.window
            }
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    def clear(self, keys: list[str]) -> None:
        """Forget the failures (after a successful login)."""
        for key in keys:
            self._failures.pop(key, None)


class BodyTooLargeError(Exception):
    """A request body grew past the limit while a handler read it."""


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes (413); add security headers.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs milliseconds a request.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLargeError
            return message

        static = scope.get("path", "").startswith("/static")

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = list(SECURITY_HEADERS)
                if not static and not any(k == b"cache-control" for k, _ in message["headers"]):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        too_large = False
        try:
            await self.app(scope, limited_receive, tracking_send)
        except* BodyTooLargeError:  # raised while a handler reads the body
            too_large = True
        if too_large and not started:
            await _too_large(send)


async def _too_large(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
