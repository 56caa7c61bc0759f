"""A fake Tines tenant for end-to-end tests and demos (see `server` for what it models)."""

from tests.tines_fake.server import FakeState, LoggedRequest, TinesFake

__all__ = ["FakeState", "LoggedRequest", "TinesFake"]
