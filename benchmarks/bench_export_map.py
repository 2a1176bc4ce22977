"""VOC mAP and speed of exports (export_ssd.py: .onnx, .tflite, SavedModel) on a converted split, each through
its runtime (inference/runtimes.py), image by image, scored by the project's devkit metric.

    python benchmarks/bench_export_map.py --model=export/model.tflite --model=export_int8/model_int8.tflite \\
        --dataset_dir=quickstart_out/tfrecords --dataset_split_name=synthetic_test [--dataset_name=voc_custom] \\
        [--threads=N]

Prints one JSON line: {"dataset": ..., "num_images": n, "models": {path: {"mAP_VOC07", "mAP_VOC12",
"images_per_second", "size_bytes"}}}. Decoding (the project's TFRecord decoder) is outside the timing.
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def parse_args(argv):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="an export (repeatable)")
    parser.add_argument("--dataset_dir", required=True, help="TFRecords of tf_convert_data.py")
    parser.add_argument("--dataset_name", default="voc_custom")
    parser.add_argument("--dataset_split_name", required=True)
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (0: one per core)")
    return parser.parse_args(argv)


def split_images(dataset):
    """(image id, uint8 [H, W, 3]) of each record of a dataset_factory description, in record order."""
    import tensorflow as tf
    from evaluation.model_eval import decode_image_ids
    for example in tf.data.TFRecordDataset(list(dataset.files)).map(dataset.decode_fn):
        yield str(decode_image_ids([example["filename"].numpy()])[0]), example["image"].numpy()


def export_map(detector, images, ground_truth):
    """(VOCEvaluation, images per second) of a runtime detector over `images` (split_images' pairs)."""
    import numpy as np
    from evaluation import model_eval, voc_metric
    ids, labels, scores, boxes, seconds = [], [], [], [], 0.0
    for image_id, image in images:
        start = time.perf_counter()
        det = detector.detect(image)
        seconds += time.perf_counter() - start
        n = len(det["scores"])
        _, lab, sc, bx = model_eval.pixel_detections(det["boxes"][None], det["scores"][None], det["classes"][None],
                                                    [n], [image.shape[0]], [image.shape[1]])
        ids += [image_id] * n
        labels.append(lab), scores.append(sc), boxes.append(bx)
    detections = voc_metric.detections_by_class(ground_truth.class_names, ids, np.concatenate(labels),
                                                np.concatenate(scores), np.concatenate(boxes))
    return voc_metric.evaluate_detections(ground_truth, detections), len(labels) / max(seconds, 1e-9)


def main(argv=None):
    args = parse_args(argv)
    from datasets import dataset_factory
    from evaluation.ground_truth import ground_truth_from_records
    from inference import runtimes
    dataset = dataset_factory.get_dataset(args.dataset_name, args.dataset_split_name, args.dataset_dir)
    ground_truth = ground_truth_from_records(list(dataset.files), dataset.class_names)
    images = list(split_images(dataset))
    result = {"dataset": f"{args.dataset_name}/{args.dataset_split_name}", "num_images": len(images), "models": {}}
    for path in args.model:
        with runtimes.open_model(path, args.threads or os.cpu_count()) as detector:
            evaluation, rate = export_map(detector, images, ground_truth)
        size = os.path.getsize(path) if os.path.isfile(path) else sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
        result["models"][path] = {"mAP_VOC07": round(evaluation.map_voc07, 4),
                                  "mAP_VOC12": round(evaluation.map_voc12, 4),
                                  "images_per_second": round(rate, 2), "size_bytes": size}
        print(f"{path}: mAP_VOC07 {evaluation.map_voc07:.4f}, {rate:.1f} images/s", file=sys.stderr, flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
