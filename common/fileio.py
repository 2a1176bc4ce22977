"""Atomic outputs: everything is written under a temporary name and renamed when complete."""
import contextlib
import json
import os
import shutil
import tempfile


def tmp_name(path):
    """A temporary sibling of `path` (same directory, so that the final rename is atomic)."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write to; renames it onto `path` on success, removes it on error."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_json(path, obj, indent=2):
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def staging_dir(final_dir):
    """A temporary directory beside `final_dir` whose files are moved into `final_dir` on success.

    Used where a run writes several files that must appear together or not at all (TFRecord shards,
    a checkpoint with its configuration). On error the staging directory is removed and `final_dir`
    is left as it was.
    """
    final_dir = os.path.abspath(final_dir)
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(final_dir)}.staging-", dir=parent)
    try:
        yield stage
        os.makedirs(final_dir, exist_ok=True)
        for name in sorted(os.listdir(stage)):
            os.replace(os.path.join(stage, name), os.path.join(final_dir, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
