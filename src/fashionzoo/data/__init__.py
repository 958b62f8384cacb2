"""The data sets: their classes, input spec and official files (:mod:`.datasets`); finding, downloading, verifying,
reading and splitting them (:mod:`.loading`)."""

from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG, DIGIT_CLASSES, FASHION_CLASSES, InputSpec
from fashionzoo.data.loading import Split, load_split, train_val_split

__all__ = [
    "DATASETS",
    "DEFAULT_TAG",
    "DIGIT_CLASSES",
    "FASHION_CLASSES",
    "InputSpec",
    "Split",
    "load_split",
    "train_val_split",
]
