"""ONNX Runtime inference without TensorFlow: sessions (:mod:`.session`), inputs (:mod:`.inputs`), loading files ahead
of the model (:mod:`.loading`), results (:mod:`.results`), classifying files (:mod:`.classify`), :class:`Classifier`
(:mod:`.classifier`), prediction files (:mod:`.prediction_files`); and the same interface over a Keras model
(:mod:`.keras_classifier`, imports TensorFlow).

>>> from fashionzoo.runtime import Classifier
>>> classifier = Classifier.from_pretrained("zoo-resnet")
>>> [getattr(r, "label", r) for r in classifier.classify(["shirt.jpg"], top_k=3)]
"""

from fashionzoo.runtime.classifier import Classifier
from fashionzoo.runtime.inputs import expand_inputs
from fashionzoo.runtime.results import Failure, Prediction

__all__ = ["Classifier", "Failure", "Prediction", "expand_inputs"]
