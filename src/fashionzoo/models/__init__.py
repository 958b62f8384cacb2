"""Keras models: builders (:mod:`.builders`), building and loading by entry (:mod:`.loading`), the weights-file check
(:mod:`.weights_file`) and evaluation on a test file (:mod:`.evaluation`). Importing a submodule imports TensorFlow."""
