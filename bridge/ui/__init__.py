"""The web console at `/ui` (see `bridge.ui.views`)."""

from bridge.ui.views import console_router

__all__ = ["console_router"]
