"""The model catalog (TOML manifests in this folder) and the resolver from ids to local files.

Imported as `edgeai.models`. No backend imports here: resolving a model never loads it.
"""

from edgeai.models.catalog import Artifact, Entry, find_entry, load_catalog, parse_id
from edgeai.models.resolve import ensure_artifact, looks_like_path, read_stamp, resolve

__all__ = ["Artifact", "Entry", "find_entry", "load_catalog", "parse_id", "ensure_artifact",
           "looks_like_path", "read_stamp", "resolve"]
