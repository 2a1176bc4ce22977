"""Running and shipping detectors outside training: video and camera streams, exports (ONNX, TFLite,
SavedModel) and their runtimes."""
