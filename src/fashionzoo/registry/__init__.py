"""The model registry, the single source of truth: record types (:mod:`.specs`), the entry type (:mod:`.entry`), the
catalogue of models and recipes (:mod:`.catalogue`) and lookup by name, alias and tag (:mod:`.lookup`).

Nothing here imports TensorFlow, so listing models and reading their records is instant."""

from fashionzoo.registry.catalogue import DEFAULT_MODEL
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.lookup import all_entries, get_entry, list_models, resolve, with_tag
from fashionzoo.registry.specs import FileRecord, Recipe, WeightsRecord

__all__ = [
    "DEFAULT_MODEL",
    "FileRecord",
    "ModelEntry",
    "Recipe",
    "WeightsRecord",
    "all_entries",
    "get_entry",
    "list_models",
    "resolve",
    "with_tag",
]
