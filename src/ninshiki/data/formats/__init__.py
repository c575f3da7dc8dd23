"""Readers (and, where tests need them, writers) for the standard on-disk data formats."""
from __future__ import annotations

from ninshiki.data.formats.csvlist import read_csv_list
from ninshiki.data.formats.idx import read_idx, write_idx
from ninshiki.data.formats.imagefolder import IMAGE_EXTENSIONS, FolderListing, is_image_file, scan_image_folder

__all__ = ["IMAGE_EXTENSIONS", "FolderListing", "is_image_file", "read_csv_list", "read_idx", "scan_image_folder",
           "write_idx"]
