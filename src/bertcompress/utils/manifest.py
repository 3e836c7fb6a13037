"""The artifact format (file names, format version, how each format loads): defined once in
:mod:`bertcompress_runtime.manifest`, which the writer (:mod:`bertcompress.compression.artifact`), the torch
loader (:mod:`bertcompress.runtime`) and the torch-free runtime share."""

from bertcompress_runtime.manifest import (
    FORMAT_VERSION,
    HOW_TO_LOAD,
    MANIFEST,
    MODULE_JSON,
    PICKLE_FILES,
    REDO,
    WEIGHT_FILES,
    ArtifactError,
    read_manifest,
    refuse_pickle,
)

__all__ = [
    "FORMAT_VERSION", "HOW_TO_LOAD", "MANIFEST", "MODULE_JSON", "PICKLE_FILES", "REDO", "WEIGHT_FILES",
    "ArtifactError", "read_manifest", "refuse_pickle",
]  # fmt: skip
