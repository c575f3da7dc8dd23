"""Model architectures. Importing this package registers every model."""
from ninshiki.models import classical, classify, detect, instance, match, segment, verify  # noqa: F401
from ninshiki.models.weights import LoadReport, create_model, load_weights, read_state_dict

__all__ = ["LoadReport", "create_model", "load_weights", "read_state_dict"]
