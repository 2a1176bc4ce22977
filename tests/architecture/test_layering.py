"""The project's imports run one way (docs/development.md, "Layers"): every import of a project module by
another is walked, at module level and inside functions alike, and must go down the package order below or
stay inside one package; no two modules may import each other, directly or round a longer cycle.

The walk reads the source (ast), so it sees imports that only run inside a function and needs no TensorFlow.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Package -> the packages it may import (besides itself). Bottom to top: common; box_ops (the SSD box ideas:
# anchors, box coding and IoU, matching, loss, post-processing); nets, preprocessing, caffe_converter (which
# maps Caffe weights onto the networks of nets/ and builds prototxt networks as nets_factory.SSDModel);
# datasets (whose input pipeline runs preprocessing and encodes anchor targets); training, inference;
# evaluation (which runs inference's detection path over a dataset); then the scripts, benchmarks and
# notebooks, which may import any library package but never tests/.
LIBRARY = {
    "common": set(),
    "box_ops": {"common"},
    "nets": {"common", "box_ops"},
    "preprocessing": {"common", "box_ops"},
    "caffe_converter": {"common", "box_ops", "nets"},
    "datasets": {"common", "box_ops", "nets", "preprocessing"},
    "training": {"common", "box_ops", "nets", "preprocessing", "datasets"},
    "inference": {"common", "box_ops", "nets", "preprocessing", "caffe_converter", "datasets"},
    "evaluation": {"common", "box_ops", "nets", "preprocessing", "caffe_converter", "datasets", "inference"},
}
TOP = {"scripts", "cli", "benchmarks", "notebooks"}
# box_ops imports nothing of the project but the TensorFlow environment defaults (common/tf_env.py), which
# every package's __init__ loads before TensorFlow.
ALLOWED_MODULES = {"box_ops": {"common", "common.tf_env"}}
SCRIPTS = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith(".py"))
PROJECT = set(LIBRARY) | {"cli", "benchmarks", "notebooks", "tests"} | set(SCRIPTS)


def package_of(module):
    top = module.split(".")[0]
    return "scripts" if top in SCRIPTS else top


def project_modules():
    """{module name: path} of every library, script, benchmark and notebook helper module."""
    modules = {name: os.path.join(ROOT, name + ".py") for name in SCRIPTS}
    for package in list(LIBRARY) + ["cli", "benchmarks", "notebooks"]:
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            if "__pycache__" in dirpath or ".ipynb_checkpoints" in dirpath:
                continue
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].replace(os.sep, ".")
                    modules[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    return modules


def imports_of(path, module, modules):
    """The project modules that `module` (at `path`) imports, wherever in the file the import statement is."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # "from pkg import mod" imports the module pkg.mod where there is one, else a name of pkg.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT:
                while name not in modules and "." in name:
                    name = name.rpartition(".")[0]
                found.add(name)
    found.discard(module)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return {m: imports_of(p, m, modules) for m, p in modules.items()}


def test_the_walk_sees_the_packages_and_their_imports(graph):
    """The check below is only as good as the walk: it must find the modules and their known imports."""
    assert {"common.errors", "box_ops.box_coding", "nets.nets_factory", "inference.detector",
            "caffe_converter.caffe_ssd", "train_ssd_network", "benchmarks.bench_inference"} <= set(graph)
    assert "box_ops.box_coding" in graph["datasets.input_pipeline"]
    assert "nets.nets_factory" in graph["caffe_converter.caffe_ssd"]
    assert "inference.detector" in graph["detect_ssd"]  # an import inside main()


def test_imports_go_down_the_layers(graph):
    bad = []
    for module, deps in sorted(graph.items()):
        package = package_of(module)
        for dep in sorted(deps):
            target = package_of(dep)
            if target == package:
                continue
            if package in TOP:
                ok = target in LIBRARY or target == "cli" or (package == "benchmarks" and target == "scripts")
            else:
                ok = target in LIBRARY[package] and dep in ALLOWED_MODULES.get(package, {dep})
            if not ok:
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"modules importing each other: {cycles}"


def test_the_check_catches_a_back_edge(graph, tmp_path):
    """A back edge (box_ops importing nets) and a two-module cycle are what the tests above must reject."""
    edited = {m: set(d) for m, d in graph.items()}
    edited["box_ops.anchors"].add("nets.ssd_params")
    with pytest.raises(AssertionError, match="box_ops.anchors -> nets.ssd_params"):
        test_imports_go_down_the_layers(edited)
    edited = {m: set(d) for m, d in graph.items()}
    edited["nets.ssd_params"].add("nets.nets_factory")
    with pytest.raises(AssertionError, match="importing each other"):
        test_no_import_cycles(edited)
