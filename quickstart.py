"""The whole pipeline on CPU in one command, with the user-facing commands printed before each step.

    make quickstart            # or: .venv/bin/python quickstart.py [--output_dir=quickstart_out]

1. generate a synthetic VOC-format dataset (datasets/synthetic_voc.py),
2. convert its train and test splits to TFRecords (tf_convert_data.py),
3. train ssd_300_vgg_lite from scratch (train_ssd_network.py),
4. evaluate VOC07/VOC12 mAP on the test split (eval_ssd_network.py),
5. detect objects in a few test images and draw them (detect_ssd.py),
then print where everything is. The last line reads `quickstart: mAP_VOC07=<value> in <seconds> s`.
The reduced settings of the test suite (tests/scripts/test_quickstart.py) run the same steps, smaller.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from cli import flags

ROOT = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output_dir", default="quickstart_out", help="everything the quickstart writes")
    p.add_argument("--num_train", type=int, default=1200, help="synthetic training images")
    p.add_argument("--num_test", type=int, default=300, help="synthetic test images")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--train_seed", type=int, default=0,
                   help="seed of the training run (initial weights, input order, augmentation); -1: unseeded")
    p.add_argument("--max_number_of_steps", type=int, default=1100, help="training steps")
    p.add_argument("--batch_size", type=int, default=8, help="training batch size")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="initial learning rate (adam)")
    p.add_argument("--decay_at", type=float, default=0.8, help="fraction of the steps after which the rate is x0.1")
    p.add_argument("--num_detect_images", type=int, default=4, help="test images drawn by detect_ssd.py")
    p.add_argument("--keep", action="store_true", help="reuse an existing --output_dir instead of starting over")
    return p.parse_args(argv)


NOISE = ("cudart_stub", "absl::InitializeLog", "cuInit", "cpu_feature_guard", "rebuild TensorFlow",
         "UserWarning", "warnings.warn(", "oneDNN custom operations")


def run_step(title, argv, log):
    """Prints the command as a user would type it, streams its output, and stops the quickstart if it fails."""
    shown = " ".join(shlex.quote(a) for a in ["python"] + argv[1:])
    print(f"\n=== {title}\n$ {shown}", flush=True)
    start = time.time()
    with open(log, "a") as f:
        f.write(f"$ {shown}\n")
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        for line in proc.stdout:
            f.write(line)
            if line.strip() and not any(n in line for n in NOISE):
                print(f"  {line.rstrip()}", flush=True)
        proc.wait()
    print(f"  ({time.time() - start:.0f} s)", flush=True)
    if proc.returncode != 0:
        print(f"quickstart: step failed ({title}, exit {proc.returncode}); full log: {log}", file=sys.stderr)
        sys.exit(1)


def shown_path(path):
    """Paths inside the repository are shown relative to it, as a user would type them there."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    out = os.path.abspath(args.output_dir)
    if os.path.exists(out) and not args.keep:
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    os.chdir(ROOT)  # the steps run in the repository root, as the README's commands do
    out = shown_path(out)
    log = os.path.join(out, "quickstart.log")
    voc = os.path.join(out, "synthetic_voc")
    records = os.path.join(out, "tfrecords")
    train_dir = os.path.join(out, "train")
    eval_dir = os.path.join(out, "eval")
    det_dir = os.path.join(out, "detections")
    py = sys.executable

    run_step("1/5 Generate a synthetic VOC-format dataset",
             [py, "-m", "datasets.synthetic_voc", f"--output_dir={voc}", f"--num_train={args.num_train}",
              f"--num_test={args.num_test}", f"--seed={args.seed}", "--overwrite"], log)
    labels = os.path.join(voc, "labels.txt")
    for split in ("train", "test"):
        run_step(f"2/5 Convert the {split} split to TFRecords",
                 [py, "tf_convert_data.py", "--dataset_name=pascalvoc", f"--dataset_dir={voc}",
                  f"--output_name=synthetic_{split}", f"--output_dir={records}", f"--split={split}",
                  f"--labels_file={labels}"], log)
    run_step("3/5 Train ssd_300_vgg_lite from scratch",
             [py, "train_ssd_network.py", f"--train_dir={train_dir}", f"--dataset_dir={records}",
              "--dataset_name=voc_custom", "--dataset_split_name=synthetic_train", "--model_name=ssd_300_vgg_lite",
              f"--batch_size={args.batch_size}", f"--max_number_of_steps={args.max_number_of_steps}",
              "--optimizer=adam", f"--learning_rate={args.learning_rate}",
              "--learning_rate_decay_type=piecewise", "--learning_rate_decay_factor=0.1",
              f"--learning_rate_boundaries={max(1, int(args.decay_at * args.max_number_of_steps))}",
              "--weight_decay=0.0001", "--augmentation=light", "--log_every_n_steps=100",
              "--save_interval_secs=120", "--save_summaries_secs=120"]
             + ([f"--seed={args.train_seed}"] if args.train_seed >= 0 else []), log)
    results_json = os.path.join(eval_dir, "results.json")
    run_step("4/5 Evaluate VOC mAP on the test split",
             [py, "eval_ssd_network.py", f"--checkpoint_path={train_dir}", f"--dataset_dir={records}",
              "--dataset_name=voc_custom", "--dataset_split_name=synthetic_test", f"--eval_dir={eval_dir}",
              f"--output_json={results_json}", "--batch_size=16"], log)
    test_ids = open(os.path.join(voc, "ImageSets", "Main", "test.txt")).read().split()[:args.num_detect_images]
    images_dir = os.path.join(out, "detect_images")
    os.makedirs(images_dir, exist_ok=True)
    for image_id in test_ids:
        shutil.copy(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), images_dir)
    run_step("5/5 Detect objects in a few test images",
             [py, "detect_ssd.py", f"--checkpoint_path={train_dir}", f"--image={images_dir}",
              f"--output_dir={det_dir}", f"--output_json={os.path.join(det_dir, 'detections.json')}",
              # A few minutes of training rank well (the mAP) but score lower than a converged model.
              "--draw_threshold=0.3"], log)

    with open(results_json) as f:
        results = json.load(f)
    elapsed = time.time() - start
    print("\nEverything is under", out)
    print(f"  dataset (VOC layout)      {voc}")
    print(f"  TFRecords + metadata      {records}")
    print(f"  checkpoints, TensorBoard  {train_dir}   (tensorboard --logdir {train_dir})")
    print(f"  mAP, PR curves, JSON      {eval_dir}")
    print(f"  annotated images          {det_dir}")
    print(f"  full log                  {log}")
    print(f"quickstart: mAP_VOC07={results['mAP_VOC07']:.4f} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
