"""The artifact format (file names, format version, how each format loads): defined once in
:mod:`bertcompress_runtime.manifest`, which the writer (:mod:`bertcompress.compression.artifact`), the torch
loader (:mod:`bertcompress.artifacts`) and the torch-free runtime share."""

from bertcompress_runtime.manifest import (
    FORMAT_VERSION,
    HOW_TO_LOAD,
    MANIFEST,
    MAX_JSON_BYTES,
    MODULE_JSON,
    OPENVINO_XML,
    PICKLE_FILES,
    READ_VERSIONS,
    REDO,
    WEIGHT_FILES,
    ArtifactError,
    artifact_file,
    read_manifest,
    refuse_pickle,
)

__all__ = [
    "FORMAT_VERSION", "HOW_TO_LOAD", "MANIFEST", "MAX_JSON_BYTES", "MODULE_JSON", "OPENVINO_XML", "PICKLE_FILES", "READ_VERSIONS",
    "REDO", "WEIGHT_FILES", "ArtifactError", "artifact_file", "read_manifest", "refuse_pickle",
]  # fmt: skip
