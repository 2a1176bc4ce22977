"""Running detectors outside training: video and camera streams (and, with the exports, their runtimes)."""
