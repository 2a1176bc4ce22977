"""Command-line plumbing shared by the scripts: the parser, the post-processing flags and their checks, range
checks, the dataset lookup, and choices taken from the factories.

Every bad flag ends the same way as every other bad input: one line `error: --flag: reason` on stderr and exit
status 1 (run_main in common/errors.py), argparse's own complaints included (its status 2 never leaks).
The factories are imported when a parser is built, not when this module is, so that a script's --help and
flag errors need TensorFlow only where a choice list does.
"""
import argparse

from common.errors import ArgumentParser, ConfigError  # noqa: F401  (re-exported: the scripts use flags.ArgumentParser)

POST_PROCESSING_FLAGS = ("select_threshold", "nms_threshold", "top_k", "keep_top_k")


def script_parser(doc, **kwargs):
    """The parser of a script whose module docstring `doc` is its usage: first line as description, the rest
    as epilog (kept as written)."""
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    return ArgumentParser(description=doc.split("\n")[0], epilog=doc.split("\n", 1)[1], **kwargs)


def add_post_processing_flags(parser):
    """The DetectionOutput flags; None (not given) keeps the model configuration's value (Caffe: 0.01, 0.45,
    400, 200)."""
    parser.add_argument("--select_threshold", type=float, default=None,
                        help="keep scores above this (default: the model configuration's, Caffe 0.01)")
    parser.add_argument("--nms_threshold", type=float, default=None,
                        help="NMS IoU threshold (default: the model configuration's, Caffe 0.45)")
    parser.add_argument("--top_k", type=int, default=None,
                        help="candidates per class before NMS (default: the model configuration's, Caffe 400)")
    parser.add_argument("--keep_top_k", type=int, default=None,
                        help="detections kept per image (default: the model configuration's, Caffe 200)")


def post_processing_overrides(args):
    """{name: value} of the post-processing flags given on the command line."""
    return {k: getattr(args, k) for k in POST_PROCESSING_FLAGS if getattr(args, k) is not None}


def check_post_processing(args):
    check_at_least(args, top_k=1, keep_top_k=1)
    check_fraction(args, "select_threshold", "nms_threshold")


def check_at_least(args, **minimums):
    """ConfigError for a flag given below its minimum (a flag left at None is not checked)."""
    for name, minimum in minimums.items():
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name}", f"must be >= {minimum}, got {value}")


def check_fraction(args, *names):
    """ConfigError for a flag given outside [0, 1]."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name}", f"must be in [0, 1], got {value}")


def model_names():
    """--model_name choices: the networks of nets/nets_factory.py."""
    from nets import nets_factory
    return sorted(nets_factory.networks_map)


def dataset_names():
    """--dataset_name choices: the datasets of datasets/dataset_factory.py."""
    from datasets import dataset_factory
    return sorted(dataset_factory.datasets_map)


def get_dataset(name, split, dataset_dir, labels_file=None, flag="--dataset_name"):
    """dataset_factory.get_dataset; an unknown name is a ConfigError naming `flag`."""
    from datasets import dataset_factory
    try:
        return dataset_factory.get_dataset(name, split, dataset_dir, labels_file=labels_file)
    except ValueError as err:
        raise ConfigError(flag, str(err)) from None
