"""Model architectures. Importing this package registers every model."""
from ninshiki.models import classify  # noqa: F401
