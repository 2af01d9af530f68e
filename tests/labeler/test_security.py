"""The defences outside the routes (`lumbar.labeler.security`): body limit, login throttle."""

from __future__ import annotations

from lumbar.labeler.security import LoginThrottle

from .conftest import PATIENTS


def test_oversize_body_is_refused(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    url = f"/api/patients/{PATIENTS[0]}/gradings/L4-L5"
    big = b'{"version": 0, "changes": {"scs": 1}, "pad": "' + b"x" * 100_000 + b'"}'
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    assert client.put(url, content=big, headers=headers).status_code == 413

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(100):
            yield b"x" * 1024

    assert client.put(url, content=chunks(), headers=headers).status_code == 413
    assert client.post("/login", content=b"a=" + b"x" * 100_000).status_code == 413


def test_throttle_delay_grows_and_expires() -> None:
    throttle = LoginThrottle(free=2, window=100.0, max_delay=30.0)
    keys = ["ip:x"]
    throttle.fail(keys, now=0.0)
    assert throttle.wait(keys, now=0.1) == 0
    throttle.fail(keys, now=1.0)
    first = throttle.wait(keys, now=1.0)
    throttle.fail(keys, now=1.0)
    assert throttle.wait(keys, now=1.0) > first > 0
    assert throttle.wait(keys, now=200.0) == 0
