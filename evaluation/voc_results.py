"""Pascal VOC results files: `DIR/comp4_det_<split>_<class>.txt`, as the official devkit reads them.

One detection a line: `<image_id> <score> <xmin> <ymin> <xmax> <ymax>`, boxes in VOC pixel coordinates
(1-based, inclusive). Writing puts each class's detections in rank order (score descending, ties in their
given order), so the ranking survives the rounding of the written scores. Reading accepts anyone's files:
any whitespace between fields, blank lines, and an exponent in numbers; a malformed line is a DatasetError
naming the file and the line.
"""
import os
import re

import numpy as np

from common.errors import DatasetError
from common.fileio import staging_dir
from evaluation.voc_metric import ClassDetections, rank_detections

COMPETITION = "comp4"  # the devkit's "any training data" detection competition


def results_filename(split, class_name, competition=COMPETITION):
    return f"{competition}_det_{split}_{class_name}.txt"


def format_detections(detections):
    """ClassDetections -> the results-file text, in rank order. Scores keep 9 significant digits (enough
    for a float32), boxes 3 decimals."""
    order = rank_detections(detections.scores)
    ids, scores, boxes = detections.image_ids[order], detections.scores[order], detections.boxes[order]
    lines = [f"{i} {s:.9g} {b[0]:.3f} {b[1]:.3f} {b[2]:.3f} {b[3]:.3f}\n"
             for i, s, b in zip(ids.tolist(), scores.tolist(), boxes.tolist())]
    return "".join(lines)


def write_results(directory, split, detections, class_names, competition=COMPETITION):
    """Writes one results file per class in `class_names` (empty for a class without detections).

    detections: {class name: ClassDetections}. All files appear together or not at all.
    Returns the list of paths written.
    """
    unknown = sorted(set(detections) - set(class_names))
    if unknown:
        raise ValueError(f"detections for unknown classes {unknown}")
    paths = []
    with staging_dir(directory) as stage:
        for name in class_names:
            filename = results_filename(split, name, competition)
            dets = detections.get(name)
            with open(os.path.join(stage, filename), "w") as f:
                f.write(format_detections(dets) if dets is not None else "")
            paths.append(os.path.join(directory, filename))
    return paths


def _bad_line(path, number, line, reason):
    return DatasetError(path, f"line {number}: {reason} in {line.strip()[:80]!r} "
                              "(expected '<image_id> <score> <xmin> <ymin> <xmax> <ymax>')")


def _tokens_per_line(data):
    """[L] int: the number of whitespace-separated fields on each '\\n'-terminated line of `data` (bytes),
    with bytes.split()'s ASCII whitespace, computed with array operations."""
    b = np.frombuffer(data, dtype=np.uint8)
    space = (b == 32) | ((b >= 9) & (b <= 13))
    starts = ~space
    starts[1:] &= space[:-1]
    line = np.cumsum(b == 10) - (b == 10)  # a newline belongs to the line it ends
    return np.bincount(line[starts], minlength=int(line[-1]) + 1 if len(line) else 0)


def read_results_file(path):
    """Reads one results file into ClassDetections (in file order). DatasetError on a malformed line.

    Fields are separated by any whitespace; blank lines are skipped; numbers may have an exponent.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DatasetError(path, f"cannot read ({err.strerror or err})") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
        data = b" " * 3 + data[3:]
    fields = _tokens_per_line(data)
    bad = np.flatnonzero((fields != 0) & (fields != 6))
    if len(bad):
        raise _bad_line(path, bad[0] + 1, _line(data, bad[0]), f"{fields[bad[0]]} fields")
    tokens = data.split()
    if not tokens:
        return ClassDetections.empty(source=path)
    try:
        values = np.array([tokens[k::6] for k in range(1, 6)], dtype=np.float64).T
        finite = np.isfinite(values).all(axis=1)
    except ValueError:
        finite = np.array([all(_is_finite(t) for t in tokens[k + 1:k + 6]) for k in range(0, len(tokens), 6)])
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        number = int(np.flatnonzero(fields)[row])
        field = next(t for t in tokens[6 * row + 1:6 * row + 6] if not _is_finite(t))
        raise _bad_line(path, number + 1, _line(data, number), f"{field.decode(errors='replace')!r} is not a finite "
                                                               "number")
    try:
        image_ids = np.array(tokens[0::6]).astype(str)  # ASCII, fast
    except UnicodeDecodeError:
        try:
            image_ids = np.array([t.decode("utf-8") for t in tokens[0::6]])
        except UnicodeDecodeError:
            raise DatasetError(path, "image ids are not UTF-8 text") from None
    return ClassDetections(image_ids, values[:, 0], values[:, 1:], source=path)


def _is_finite(token):
    try:
        return bool(np.isfinite(float(token)))
    except ValueError:
        return False


def _line(data, index):
    """The text of line `index` (0-based) of `data`."""
    return data.split(b"\n")[index].decode("utf-8", errors="replace")


def _results_pattern(split, competition):
    return re.compile(rf"^{re.escape(competition)}_det_{re.escape(split)}_(.+)\.txt$")


def infer_split(directory, class_names, competition=COMPETITION):
    """The split name of the results files in `directory` (there must be exactly one); DatasetError if not."""
    if not os.path.isdir(directory):
        raise DatasetError(directory, "results directory does not exist")
    pattern = re.compile(rf"^{re.escape(competition)}_det_(.+)_({'|'.join(map(re.escape, class_names))})\.txt$")
    splits = sorted({m.group(1) for m in map(pattern.match, os.listdir(directory)) if m})
    if len(splits) != 1:
        found = f"found splits {splits}" if splits else "found none"
        raise DatasetError(directory, f"cannot tell the split of the {competition}_det_<split>_<class>.txt "
                                      f"files ({found}); name the split")
    return splits[0]


def read_results(directory, split, class_names, competition=COMPETITION):
    """Reads `directory`'s results files for `split`.

    Returns ({class name: ClassDetections} for every class in class_names, notes): a missing class file
    means no detections; files of other classes are ignored. Both are listed in `notes` (strings).
    A directory without any results file of the split is a DatasetError (most likely the wrong split).
    """
    if not os.path.isdir(directory):
        raise DatasetError(directory, "results directory does not exist")
    pattern = _results_pattern(split, competition)
    present = {m.group(1): m.group(0) for m in map(pattern.match, sorted(os.listdir(directory))) if m}
    if not present:
        raise DatasetError(directory, f"no {results_filename(split, '<class>', competition)} results files")
    notes = []
    ignored = sorted(set(present) - set(class_names))
    if ignored:
        notes.append(f"ignored results files of classes not evaluated: {', '.join(present[c] for c in ignored)}")
    missing = [c for c in class_names if c not in present]
    if missing:
        notes.append(f"no results file (no detections) for: {', '.join(missing)}")
    detections = {}
    for name in class_names:
        if name in present:
            detections[name] = read_results_file(os.path.join(directory, present[name]))
        else:
            detections[name] = ClassDetections.empty()
    return detections, notes
