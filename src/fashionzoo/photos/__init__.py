"""Images into model inputs: decoding (:mod:`.decode`), the garment pipeline (:mod:`.garment`, :mod:`.segmentation`),
the digit pipeline (:mod:`.digits`), the dispatch by pipeline (:mod:`.convert`), photo calibration
(:mod:`.calibration`), scoring on labelled real photos (:mod:`.scoring`) and synthetic photos made from data-set
images (:mod:`.synthetic`).

No TensorFlow: numpy, Pillow and OpenCV."""

from fashionzoo.photos.convert import convert_file, convert_image, preprocess_file, to_model_input
from fashionzoo.photos.decode import load_image

__all__ = ["convert_file", "convert_image", "load_image", "preprocess_file", "to_model_input"]
