"""Semantic segmentation data: sets of images with class maps, their readers, transforms and batches."""
