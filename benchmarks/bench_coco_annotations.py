"""Reads a train2017-sized COCO instances JSON with the converter's reader: time and peak memory.

118,287 images, 860,001 annotations (a 12-point polygon each, boxes inside the image), 80 categories,
written to a temporary file; then, in a fresh process (so that the generator's memory does not count),
datasets/coco_to_tfrecords.read_coco_annotations parses it (segmentations dropped), checks every image and
annotation and groups the annotations by image. Prints one JSON line {"file_mib", "images", "objects",
"seconds", "peak_rss_mib"} (peak resident memory of that process, TensorFlow's import included).

    python benchmarks/bench_coco_annotations.py [--images=118287 --annotations=860001]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402
READ = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from datasets.coco_to_tfrecords import read_coco_annotations
start = time.time()
annotations = read_coco_annotations({path!r})
print(json.dumps({{"images": len(annotations.images),
                  "objects": int(sum(len(v[0]) for v in annotations.objects.values())),
                  "seconds": round(time.time() - start, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}}))
"""


def write_instances(path, num_images, num_annotations, seed=0):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480, "license": 1}
              for i in range(1, num_images + 1)]
    image_ids = rng.integers(1, num_images + 1, num_annotations)
    categories = rng.integers(1, 81, num_annotations)
    xy = rng.uniform(0, 300, (num_annotations, 2)).round(2)
    wh = (rng.uniform(0, 1, (num_annotations, 2)) * [300, 170] + 1).round(2)
    polygons = rng.uniform(0, 300, (num_annotations, 24)).round(2)
    annotations = [{"segmentation": [polygons[k].tolist()], "area": round(float(wh[k, 0] * wh[k, 1] * 0.7), 2),
                    "iscrowd": 0, "image_id": int(image_ids[k]), "bbox": [*xy[k].tolist(), *wh[k].tolist()],
                    "category_id": int(categories[k]), "id": k + 1} for k in range(num_annotations)]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 81)]}, f)


def main(argv=None):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=118287)
    parser.add_argument("--annotations", type=int, default=860001)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "instances.json")
        write_instances(path, args.images, args.annotations)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", READ.format(root=ROOT, path=path)], capture_output=True,
                              text=True, env=env, check=True)
        out = {"file_mib": round(os.path.getsize(path) / 2**20)}
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
