"""From a run folder to released files: ONNX export (:mod:`.export`), cards and figures (:mod:`.reports`), what may be
released or pushed (:mod:`.checks`), the release into the package (:mod:`.release`) and the Hub: released files found,
fetched, verified and pushed (:mod:`.hub`)."""
