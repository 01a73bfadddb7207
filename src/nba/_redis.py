"""What every Redis-backed part of nba shares: the client it talks through and the namespace its keys live in.

``RedisState``, ``RedisProfileStore``, ``RedisContactStore`` and ``RedisTriggerStore`` each
take a ``redis://`` URL (a client made here, with short timeouts, which the part closes)
or a ready ``redis.Redis`` (the caller's, never closed by nba), and a namespace that
becomes the hash tag ``{namespace}`` of every key, so a cluster keeps a namespace on one slot.
"""

from __future__ import annotations

from typing import Any

from nba.errors import ConfigError

__all__ = ["connect"]


def connect(url: Any, namespace: Any, who: str) -> tuple[Any, bool, str]:
    """``(client, owned, tag)`` for ``who``: the client, whether nba made it (and closes it), ``{namespace}``.

    Raises ``ConfigError`` without the ``redis`` package, for a namespace that is not
    non-empty ASCII text without ``}``, and for anything but a URL or a ``redis.Redis``.
    """
    try:
        import redis
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ConfigError(f"{who} needs the redis package: pip install 'nba[redis]'") from None
    if not isinstance(namespace, str) or not namespace or not namespace.isascii() or "}" in namespace:
        raise ConfigError(f"{who}: namespace must be non-empty ASCII text without '}}', got {namespace!r}")
    if isinstance(url, str):
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10)
        return client, True, "{" + namespace + "}"
    if isinstance(url, redis.Redis):
        return url, False, "{" + namespace + "}"
    raise ConfigError(f"{who}: url must be a redis:// URL or a redis.Redis, got {type(url).__name__}")
