"""Classical models under the same registry and contracts as the networks (ninshiki.classical.base)."""
from ninshiki.models.classical import encoded_sift, haar_cascade, hog_svm  # noqa: F401
