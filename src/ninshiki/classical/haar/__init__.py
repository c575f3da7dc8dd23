"""Viola-Jones: integral images, Haar-like features, AdaBoost, the attentional cascade, OpenCV's XML."""
