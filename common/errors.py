"""The project's few exception types, and the one-line reporting the scripts share.

Library code raises these with the offending file and the reason; the top-level scripts wrap `main` in
`run_main`, which prints `error: <file>: <reason>` on one line and exits with status 1.
"""
import argparse
import sys


class SSDError(Exception):
    """Base class: an error about one file (or input), with a human reason."""

    def __init__(self, path, reason):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(str(self))

    def __str__(self):
        return f"{self.path}: {self.reason}" if self.path else self.reason


class DatasetError(SSDError):
    """A dataset file (image, annotation, record, labels file) is invalid or missing."""


class CaffeModelError(SSDError):
    """A .caffemodel or .prototxt cannot be read, or does not fit the requested network."""


class CheckpointError(SSDError):
    """A checkpoint or model configuration is missing or does not fit the model."""


class ConfigError(SSDError):
    """Invalid command-line arguments or configuration values."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors (unknown flag, bad value or choice, missing required flag) raise
    ConfigError, so that run_main prints one line and exits with status 1 (argparse's own status 2 never
    leaks). Scripts get it through cli/flags.py; library modules with a command line use it from here."""

    def error(self, message):
        raise ConfigError(None, message)


def run_main(main, argv=None):
    """Runs `main(argv)`, turning SSDError into one line on stderr and exit status 1."""
    try:
        status = main(argv)
    except SSDError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status or 0)
