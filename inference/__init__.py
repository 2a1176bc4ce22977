"""Running and shipping detectors outside training: exports (ONNX, TFLite, SavedModel) and their runtimes."""
