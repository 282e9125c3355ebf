"""``fmhub serve``: models behind HTTP with dynamic batching (needs the ``fmhub[serve]`` extra).

:func:`serve` runs a uvicorn server in the foreground; :func:`create_app` gives the ASGI app for
embedding in another server. See docs/serving.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import FmhubError

__all__ = ["ServeConfig", "create_app", "serve", "served_names"]


def _require() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise FmhubError(
            f"fmhub serve needs FastAPI and uvicorn ({exc.name} is missing); install fmhub[serve]."
        ) from None


def served_names(sources: Sequence[str]) -> dict[str, str]:
    """Served name of each source: ``NAME=SOURCE`` names it, a folder is served by its base name,
    anything else by itself. Two sources with one name is an error."""
    out: dict[str, str] = {}
    for raw in sources:
        name, sep, source = raw.partition("=")
        if not sep:
            source = raw
            path = Path(os.path.expanduser(raw))
            name = path.name if path.is_dir() else raw
        if not name or not source:
            raise FmhubError(f"Cannot serve {raw!r}: give NAME, FOLDER or SERVED_NAME=SOURCE.")
        if name in out:
            raise FmhubError(
                f"Two models would be served as {name!r}; name them with SERVED_NAME=SOURCE."
            )
        out[name] = source
    return out


def create_app(
    models: Mapping[str, Any],
    config: Any = None,
    options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Any:
    """The ASGI app serving ``models`` (served name -> ``Model`` or name/folder to load with the
    load ``options``)."""
    _require()
    from .app import ServeConfig
    from .app import create_app as _create

    if config is None:
        config = ServeConfig(**settings)
    return _create(models, config, {name: dict(options or {}) for name in models})


def serve(
    models: Mapping[str, Any] | Sequence[str],
    options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> None:
    """Serve ``models`` until SIGINT/SIGTERM; in-flight requests finish before it returns."""
    _require()
    import uvicorn

    from .app import ServeConfig, env_api_key

    if not isinstance(models, Mapping):
        models = served_names(list(models))
    settings.setdefault("api_key", env_api_key())
    from ..spec import validate_model

    config = validate_model(ServeConfig, settings, "serve settings")
    app = create_app(models, config, options)
    uv = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        timeout_graceful_shutdown=config.graceful_timeout_s or None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(uv)
    print(
        f"fmhub serve: {', '.join(models)} on http://{config.host}:{config.port} "
        f"(batching {'on, max ' + str(config.max_batch) if config.batching else 'off'})",
        flush=True,
    )
    server.run()


def __getattr__(name: str) -> Any:
    if name == "ServeConfig":
        from .app import ServeConfig

        return ServeConfig
    raise AttributeError(name)
