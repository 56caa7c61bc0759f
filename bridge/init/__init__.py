"""`jit-bridge init`: set up Keycloak, settings and secrets for a new bridge."""
