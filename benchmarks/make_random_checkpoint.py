"""Writes a randomly initialised model of the factory (checkpoint + ssd_config.json), for the speed benchmarks.

    python benchmarks/make_random_checkpoint.py --model_name=ssdlite_320_mobilenet_v2 --output_dir=/tmp/ssdlite

Speed does not depend on the weights, but comparing runtimes' detections does, and so does the NMS's work:
a fresh batch norm network's activations vanish layer by layer (unit moving variance against small inputs),
every anchor gets the same score, and ties make "the same top-100" meaningless. So batch norm layers get
random statistics and offsets (mean and beta ~ N(0, 0.5), variance and gamma ~ U(0.5, 2)), which keep the
activations O(1), and the heads' weights (the variables under a *_box scope) are drawn from N(0,
--head_stddev), which spreads the scores out.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import flags  # noqa: E402


def write_random_checkpoint(output_dir, model_name, class_names=None, seed=0, head_stddev=0.05):
    """The module docstring's model in output_dir (VOC's class names by default); returns the checkpoint prefix."""
    import numpy as np
    from datasets.voc_classes import VOC_CLASSES
    from training.checkpoints import random_batch_norm_statistics, save_initial_model
    random_heads = random_batch_norm_statistics(np.random.default_rng(seed), head_stddev)
    return save_initial_model(output_dir, model_name, list(class_names or VOC_CLASSES), seed=seed,
                              load_values=random_heads)


def main(argv=None):
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name", required=True, choices=flags.model_names())
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_classes", type=int, default=21, help="classes including the background")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head_stddev", type=float, default=0.05, help="0: keep the heads' own initialisation")
    args = p.parse_args(argv)
    flags.check_at_least(args, num_classes=2, head_stddev=0.0)
    names = None if args.num_classes == 21 else [f"class_{i}" for i in range(1, args.num_classes)]
    print(write_random_checkpoint(args.output_dir, args.model_name, names, args.seed, args.head_stddev))
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
