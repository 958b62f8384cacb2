"""Finding an entry by name, alias and weights tag; the released records from ``weights.json``."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from importlib import resources
from typing import Any

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG
from fashionzoo.registry.catalogue import DEFAULT_MODEL, ENTRIES
from fashionzoo.registry.entry import ModelEntry
from fashionzoo.registry.specs import WeightsRecord


def _load_weights_records() -> dict[str, WeightsRecord]:
    """Released weights records by full name (``cnn``, ``cnn-small.mnist``), from the generated ``weights.json``."""
    text = resources.files("fashionzoo").joinpath("weights.json").read_text(encoding="utf-8")
    return {name: WeightsRecord.from_json(raw) for name, raw in json.loads(text).items()}


def _build_registry() -> dict[str, ModelEntry]:
    """Every (model, tag) pair by full name, default tags first in registry order, with its released weights."""
    records = _load_weights_records()
    registry = {}
    for tag in DATASETS:
        for entry in ENTRIES:
            if tag in entry.tags:
                variant = dataclasses.replace(entry, tag=tag, recipe=entry.tag_recipes.get(tag, entry.recipe))
                registry[variant.full_name] = dataclasses.replace(variant, weights=records.pop(variant.full_name, None))
    if records:
        raise RuntimeError(f"weights.json names unknown models or tags: {sorted(records)}")
    return registry


@functools.cache
def _variants() -> dict[str, ModelEntry]:
    """Every (model, tag) by full name, built on first use (not at import): a missing or corrupt ``weights.json`` is
    then a one-line error of the command that needs it, instead of a traceback from ``import fashionzoo``."""
    try:
        return _build_registry()
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as error:
        path = resources.files("fashionzoo").joinpath("weights.json")
        raise FashionZooError(f"{path}: missing or corrupt ({reason(error)}); reinstall fashionzoo") from None


@functools.cache
def _registry() -> dict[str, ModelEntry]:
    return {name: entry for name, entry in _variants().items() if entry.tag == DEFAULT_TAG}


@functools.cache
def _aliases() -> dict[str, str]:
    return {alias: e.name for e in _registry().values() for alias in (e.name, *e.aliases)}


def __getattr__(name: str) -> Any:
    """``REGISTRY``: every model by name with its default (Fashion-MNIST) weights, read from ``weights.json`` on
    first use; :func:`get_entry` also knows the other tags."""
    if name == "REGISTRY":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_entry(name: str) -> ModelEntry:
    """The registry entry for a model name or alias, optionally with a weights tag (``cnn-small.mnist``,
    ``cnn-b.mnist``), case-insensitive, or ``default`` (:data:`DEFAULT_MODEL`); unknown names suggest close matches."""
    if not isinstance(name, str):
        raise FashionZooError(f"a model name is a string such as {DEFAULT_MODEL!r}, not {type(name).__name__} {name!r}")
    key = name.strip().lower()
    key = DEFAULT_MODEL if key == "default" else key
    aliases, variants = _aliases(), _variants()
    model, dot, tag = key.partition(".")
    if model in aliases and not (dot and not tag):
        base = aliases[model]
        entry = variants.get(f"{base}.{tag}" if tag and tag != DEFAULT_TAG else base)
        if entry is None:
            tags = ", ".join(base if t == DEFAULT_TAG else f"{base}.{t}" for t in variants[base].tags)
            what = "weights" if tag in DATASETS else f"weights (tags: {', '.join(DATASETS)})"
            raise FashionZooError(f"model {base!r} has no {tag!r} {what}; it has: {tags}")
        return entry
    close = difflib.get_close_matches(key, list(dict.fromkeys([*aliases, *variants])), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise FashionZooError(f"unknown model {name!r}.{hint} Run 'fashionzoo list' to see every model.")


def resolve(model: str | ModelEntry) -> ModelEntry:
    """An entry as given, or looked up by name: functions take either, so a name is resolved once, at the edge."""
    return model if isinstance(model, ModelEntry) else get_entry(model)


def with_tag(model: str | ModelEntry, tag: str | None) -> ModelEntry:
    """``model`` resolved, with its weights for data set ``tag`` instead when one is given (``--dataset mnist``)."""
    entry = resolve(model)
    return get_entry(f"{entry.name}.{tag}") if tag else entry


def all_entries() -> list[ModelEntry]:
    """Every model with every weights tag (``list`` shows them all)."""
    return list(_variants().values())


def list_models(pretrained: bool = False) -> list[str]:
    """Names of every model in the zoo, in registry order; with ``pretrained``, only those with released
    Fashion-MNIST weights, which :func:`fashionzoo.load` loads (tagged weights: :func:`all_entries`)."""
    return [name for name, entry in _registry().items() if entry.weights or not pretrained]
