"""Converts a Pascal VOC-layout folder, or a COCO instances JSON with its images, into TFRecord shards
plus a metadata file.

    python tf_convert_data.py --dataset_name=pascalvoc --dataset_dir=VOCdevkit/VOC2007/ \\
        --output_name=voc_2007_test --output_dir=./tfrecords --split=test
    python tf_convert_data.py --dataset_name=coco --annotations_file=annotations/instances_val2017.json \\
        --images_dir=val2017/ --output_name=coco_2017_val --output_dir=./tfrecords

Writes <output_name>_000.tfrecord, _001, ... and <output_name>_metadata.json (see
datasets/voc_to_tfrecords.py and datasets/coco_to_tfrecords.py). Strict by default: the first invalid image or annotation stops the run with
`error: <file>: <reason>`, exit status 1, and nothing written; --skip_invalid converts the rest and lists
every skipped file.
"""
import os
import time

from cli import flags
from common.errors import ConfigError, run_main


def parse_args(argv):
    parser = flags.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_name", default="pascalvoc", choices=["pascalvoc", "coco"],
                        help="the input layout: pascalvoc (Annotations/, JPEGImages/, ImageSets/Main/) or coco "
                             "(an instances JSON and its image folder)")
    parser.add_argument("--dataset_dir", default=None, help="pascalvoc: the VOC folder, e.g. VOCdevkit/VOC2007/")
    parser.add_argument("--annotations_file", default=None,
                        help="coco: the instances JSON, e.g. annotations/instances_val2017.json")
    parser.add_argument("--images_dir", default=None, help="coco: the folder of its images, e.g. val2017/")
    parser.add_argument("--output_name", required=True,
                        help="prefix of the output files, e.g. voc_2007_test (the name dataset_factory reads)")
    parser.add_argument("--output_dir", default="./tfrecords", help="where the shards and metadata go")
    parser.add_argument("--split", default=None,
                        help="convert the ids of ImageSets/Main/<split>.txt; default: every annotation")
    parser.add_argument("--samples_per_file", type=int, default=200, help="examples per shard")
    parser.add_argument("--num_threads", type=int, default=os.cpu_count() or 1,
                        help="images read and checked in parallel (default: all cores)")
    parser.add_argument("--skip_invalid", action="store_true",
                        help="leave out invalid images and list them, instead of stopping at the first")
    parser.add_argument("--labels_file", default=None,
                        help="class names, one a line (labels 1..N in order); default: the 20 VOC classes")
    args = parser.parse_args(argv)
    needed = ("annotations_file", "images_dir") if args.dataset_name == "coco" else ("dataset_dir",)
    for flag in needed:
        if not getattr(args, flag):
            raise ConfigError(f"--{flag}", f"required with --dataset_name={args.dataset_name}")
    others = {"coco": ("dataset_dir", "split", "labels_file"), "pascalvoc": ("annotations_file", "images_dir")}
    for flag in others[args.dataset_name]:
        if getattr(args, flag):
            raise ConfigError(f"--{flag}", f"does not apply to --dataset_name={args.dataset_name}")
    if args.samples_per_file < 1:
        raise ConfigError("--samples_per_file", f"must be >= 1, got {args.samples_per_file}")
    if args.num_threads < 1:
        raise ConfigError("--num_threads", f"must be >= 1, got {args.num_threads}")
    if not args.output_name or os.path.basename(args.output_name) != args.output_name:
        raise ConfigError("--output_name", f"must be a file name prefix, got {args.output_name!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Imported here so that --help and flag errors answer without TensorFlow's start-up time.
    from datasets import coco_to_tfrecords, tfrecord_writer, voc_to_tfrecords
    from datasets.voc_classes import VOC_CLASSES

    start = time.time()

    def progress(done, total):
        if done % 500 == 0 or done == total:
            rate = done / max(time.time() - start, 1e-9)
            print(f"{done}/{total} images processed ({rate:.1f} images/s, {(total - done) / rate:.0f} s left)",
                  flush=True)

    common = dict(samples_per_file=args.samples_per_file, num_threads=args.num_threads,
                  skip_invalid=args.skip_invalid, progress_fn=progress)
    if args.dataset_name == "coco":
        metadata = coco_to_tfrecords.convert_coco(args.annotations_file, args.images_dir, args.output_dir,
                                                  args.output_name, **common)
    else:
        class_names = voc_to_tfrecords.read_labels_file(args.labels_file) if args.labels_file else VOC_CLASSES
        metadata = voc_to_tfrecords.convert_voc(args.dataset_dir, args.output_dir, args.output_name,
                                                split=args.split, class_names=class_names, **common)
    for item in metadata["skipped"]:
        print(f"skipped: {item['file']}: {item['reason']}")
    print(f"wrote {metadata['num_examples']} images ({metadata['num_objects']} objects, "
          f"{metadata['num_difficult']} {'crowd' if args.dataset_name == 'coco' else 'difficult'}) of "
          f"{len(metadata['class_names'])} classes in "
          f"{len(metadata['shards'])} shards, skipped {len(metadata['skipped'])}, "
          f"in {time.time() - start:.1f} s:")
    for name in metadata["shards"] + [tfrecord_writer.metadata_name(args.output_name)]:
        print(f"  {os.path.join(args.output_dir, name)}")
    return 0


if __name__ == "__main__":
    run_main(main)
