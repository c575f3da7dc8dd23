"""Semantic segmenters. Importing this package registers every architecture under task "segment"."""
