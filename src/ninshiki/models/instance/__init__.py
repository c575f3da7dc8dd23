"""Instance segmenters. Importing this package registers every architecture under task "instance"."""
