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


def main(argv=None):
    import numpy as np
    from training.checkpoints import random_batch_norm_statistics, save_initial_model
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name", required=True, choices=flags.model_names())
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_classes", type=int, default=21, help="classes including the background")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head_stddev", type=float, default=0.05, help="0: keep the heads' own initialisation")
    args = p.parse_args(argv)
    flags.check_at_least(args, num_classes=2, head_stddev=0.0)
    random_heads = random_batch_norm_statistics(np.random.default_rng(args.seed), args.head_stddev)

    from datasets.voc_classes import VOC_CLASSES
    names = list(VOC_CLASSES) if args.num_classes == 21 else [f"class_{i}" for i in range(1, args.num_classes)]
    prefix = save_initial_model(args.output_dir, args.model_name, names, seed=args.seed, load_values=random_heads)
    print(prefix)
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
