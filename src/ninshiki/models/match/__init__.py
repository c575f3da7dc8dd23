"""Learned local features for specific-object recognition: LIFT (Yi et al., ECCV 2016). Importing this package
registers `lift`."""
from ninshiki.models.match.lift import LIFT, lift
from ninshiki.models.match.lift_extractor import LiftExtractor

__all__ = ["LIFT", "LiftExtractor", "lift"]
