"""``fashionzoo train``: the run folder (:mod:`.runs`, no TensorFlow), the loop (:mod:`.fit`), search
(:mod:`.search`), resuming (:mod:`.resume`), ensembles (:mod:`.ensemble`), seed sweeps (:mod:`.seeds`) and
:func:`.train.train`, which ties them together."""
