"""Classical models under the same registry and contracts as the networks (ninshiki.classical.base)."""
