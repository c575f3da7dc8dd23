"""Object detectors. Importing this package registers every architecture under task "detect"."""
