"""jit-bridge: Keycloak groups to application teams and roles, just in time and on schedule."""

__version__ = "0.1.0"
