"""Every command line shown in README.md and docs/*.md names a real script, module or make target, and every
`--flag` it passes is one that script's argument parser accepts.

Commands are read from fenced code blocks (``` or ~~~, unless tagged as another language such as python or
json), from blocks indented by four spaces, and from inline code spans that start with a command; a line
ending in `\\` continues on the next. A command is `python <script>.py ...`, `python -m <module> ...` (any
interpreter path: `.venv/bin/python`, `python3`), `make <target> ...`, or an inline `<script>.py --flag ...`,
after any environment assignments (`TF_CONFIG=... python ...`); `#` starts a comment, `&&` and `;` separate
commands. Placeholders such as `[--split=test]` count as flags. A script's accepted flags are the options of
its `--help` usage block (run once per script, in a subprocess, and cached), so a flag argparse does not know
fails here exactly as it would fail for a user. Modules outside the repository (pytest, pip, venv) are
checked for existence only. docs/*.md is globbed at collection time, so documents added later are covered.
"""
import functools
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHELL_FENCES = {"", "sh", "bash", "shell", "console", "shell-session", "zsh"}
SEPARATORS = {"&&", "||", ";"}
WRAPPERS = {"env", "time", "nohup", "nice", "timeout", "taskset", "numactl", "perf", "xvfb-run"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FLAG = re.compile(r"^[\[(]*(--[A-Za-z0-9][A-Za-z0-9_-]*)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def is_python(token):
    return re.fullmatch(r"python[0-9.]*", os.path.basename(token)) is not None


def is_pip(token):
    return re.fullmatch(r"pip[0-9.]*", os.path.basename(token)) is not None


def tokenize(text):
    """Shell words of a line, comments dropped."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in a placeholder: fall back to whitespace
        return text.split("#", 1)[0].split()


def is_bare_script(words):
    """`train_ssd_network.py --flag ...` without an interpreter: a command; `box_ops/anchors.py` alone: a path."""
    return words[0].endswith(".py") and len(words) > 1 and FLAG.match(words[1]) is not None


def is_head(words):
    return bool(words) and (is_python(words[0]) or is_pip(words[0]) or words[0] == "make" or is_bare_script(words))


def command_words(words):
    """The words from the command on: environment assignments, a `$` prompt and wrappers such as
    `timeout 600` or `perf record -g` dropped; [] when no command this test checks follows."""
    i = 0
    while i < len(words) and not is_head(words[i:]):
        if ENV_ASSIGNMENT.match(words[i]) or words[i] == "$":
            i += 1
        elif words[i] in WRAPPERS:
            i = next((j for j in range(i + 1, len(words)) if is_head(words[j:])), len(words))
        else:
            return []
    return words[i:]


def starts_command(text):
    """Whether a line or span of text begins with something this test checks."""
    return bool(command_words(tokenize(text)))


def join_continuations(lines):
    """(line number, text) of each logical line: a trailing backslash joins the next line."""
    out, buf, start = [], [], None
    for number, line in lines:
        if start is None:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        out.append((start, " ".join(part.strip() for part in buf)))
        buf, start = [], None
    if buf:
        out.append((start, " ".join(part.strip() for part in buf)))
    return out


def code_lines(text):
    """(line number, logical line) of the command candidates of a markdown text: fenced shell blocks,
    4-space-indented blocks and inline code spans that start with a command."""
    candidates, block, prose = [], [], []
    fence, fence_is_shell = None, False

    def flush_block():
        candidates.extend(join_continuations(block))
        block.clear()

    for number, line in enumerate(text.splitlines(), 1):
        opening = re.match(r"^\s{0,3}(`{3,}|~{3,})\s*([^`\s]*)", line)
        if fence is None and opening:
            flush_block()
            fence, fence_is_shell = opening.group(1), opening.group(2).lower() in SHELL_FENCES
            prose.append((number, ""))
            continue
        if fence is not None:
            if re.match(r"^\s{0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
                flush_block()
                fence = None
            elif fence_is_shell:
                block.append((number, line))
            prose.append((number, ""))
            continue
        if line.startswith("    ") or line.startswith("\t") or (block and block[-1][1].rstrip().endswith("\\")):
            block.append((number, line))
            prose.append((number, line))  # also a list item's indented paragraph, whose inline code counts
            continue
        flush_block()
        prose.append((number, line))
    flush_block()
    candidates = [(n, c) for n, c in candidates if starts_command(c.strip())]

    # Inline spans, within a paragraph (no blank line inside a span); tables' cells included.
    paragraph = []
    for number, line in prose + [(None, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        if paragraph:
            joined = "\n".join(l for _, l in paragraph)
            for match in INLINE_CODE.finditer(joined):
                span = " ".join(match.group(2).split())
                if starts_command(span):
                    candidates.append((paragraph[0][0] + joined[:match.start()].count("\n"), span))
        paragraph = []
    return sorted(candidates)


def split_commands(logical_line):
    """The tokens of each command of a logical line (comments dropped; &&, ||, ; separate commands)."""
    tokens = tokenize(logical_line)
    commands, current = [], []
    for i, token in enumerate(tokens):
        # A pipe ends a command unless it separates alternatives inside a placeholder: [--a | --b].
        pipe = token == "|" and i + 1 < len(tokens) and not tokens[i + 1].startswith(("-", "["))
        if token in SEPARATORS or pipe:
            commands.append(current)
            current = []
        elif token != "|":
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def flags_of(tokens):
    names = []
    for token in tokens:
        match = FLAG.match(token)
        if match:
            names.append(match.group(1))
    return names


@functools.lru_cache(maxsize=None)
def accepted_flags(root, argv):
    """The long options of the usage block of `<argv> --help` run in `root`; raises on a failing --help."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=root, capture_output=True, text=True,
                          timeout=300, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} --help exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    usage = re.search(r"^usage:.*?(?=\n\s*\n|\Z)", proc.stdout, re.DOTALL | re.MULTILINE)
    if usage is None:
        raise RuntimeError(f"{' '.join(argv)} --help printed no usage block")
    return frozenset(re.findall(r"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9_-]*)", usage.group(0))) | {"--help"}


@functools.lru_cache(maxsize=None)
def make_targets(root):
    path = os.path.join(root, "Makefile")
    if not os.path.exists(path):
        return frozenset()
    targets = set()
    for line in open(path):
        match = re.match(r"^([A-Za-z0-9_.%/ -]+?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return frozenset(targets)


def check_flags(root, argv, shown, flags):
    try:
        known = accepted_flags(root, tuple(argv))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return [f"{shown}: {e}"]
    return [f"{shown}: unknown flag {flag}" for flag in flags if flag not in known]


def check_command(root, tokens):
    """Problems of one command (a list of strings, empty when it is fine)."""
    tokens = command_words(tokens)
    if not tokens:
        return []
    head, rest = tokens[0], tokens[1:]
    if head == "make":
        targets = [t for t in rest if not t.startswith("-") and not ENV_ASSIGNMENT.match(t)]
        return [f"make {t}: no such target in Makefile" for t in targets if t not in make_targets(root)]
    if is_pip(head):
        return check_pip(root, rest)
    if is_python(head):
        if rest[:1] == ["-m"] and len(rest) >= 2:
            module, args = rest[1], rest[2:]
            if module == "pip":
                return check_pip(root, args)
            local = os.path.join(root, *module.split("."))
            if os.path.exists(local + ".py") or os.path.exists(os.path.join(local, "__main__.py")):
                return check_flags(root, ["-m", module], f"python -m {module}", flags_of(args))
            if importlib.util.find_spec(module.split(".")[0]) is None:
                return [f"python -m {module}: no such module"]
            return []  # a module from elsewhere (pytest, venv, ipykernel): its flags are not ours
        if not rest or rest[0].startswith("-"):
            return []  # the interpreter itself (python -c ..., python --version)
        head, rest = rest[0], rest[1:]
    elif not is_bare_script(tokens):
        return []
    if head.endswith(".py"):
        if not os.path.isfile(os.path.join(root, head)):
            return [f"{head}: no such script"]
        return check_flags(root, [head], head, flags_of(rest))
    return []


def check_pip(root, args):
    problems = []
    for i, arg in enumerate(args[:-1]):
        if arg in ("-r", "--requirement") and not os.path.isfile(os.path.join(root, args[i + 1])):
            problems.append(f"pip: no such requirements file {args[i + 1]}")
    return problems


def check_markdown(root, text, name):
    """Every problem of the commands shown in one markdown text, as `name:line: problem`, and the number of
    commands checked."""
    problems, count = [], 0
    for number, line in code_lines(text):
        for tokens in split_commands(line):
            count += 1
            problems.extend(f"{name}:{number}: {p}" for p in check_command(root, tokens))
    return problems, count


DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_shown_exists_with_its_flags(doc):
    with open(os.path.join(ROOT, doc)) as f:
        problems, _ = check_markdown(ROOT, f.read(), doc)
    assert not problems, "\n".join(problems)


def test_readme_shows_the_two_commands_and_the_workflow():
    """The parser finds the README's commands at all (so an empty result above is not a parsing failure)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        found = [" ".join(tokens[:2]) for _, line in code_lines(f.read()) for tokens in split_commands(line)]
    for command in ("make quickstart", "make test", "python tf_convert_data.py", "python train_ssd_network.py",
                    "python eval_ssd_network.py", "python detect_ssd.py", "python export_ssd.py",
                    "python caffe_to_tensorflow.py"):
        assert command in found, (command, found)


SAMPLE = """\
# A sample

Fenced, with a comment, a continuation, an environment prefix and placeholders:

```bash
# a comment line: python missing.py --nothing
TF_CONFIG='{"task": {"index": 0}}' python tool.py --alpha=1 \\
    [--beta] --gamma=2   # --delta in a comment is not a flag
make hello && make nothere
```

```python
python = "tool.py --not_checked"   # python code, not a command
```

Indented:

    .venv/bin/python tool.py --beta --alpha 3 --listed_only_in_the_epilog
    python missing.py --alpha
    timeout 600 perf record -g python tool.py --alpha=1 --gamma

- A list item

    whose indented paragraph shows `python tool.py --eta`.

Inline: run `python tool.py --epsilon` or `tool.py [--alpha=1 | --beta]`, or `python -m pkg.tool
--zeta`; prose flags such as `--omega` alone are not commands, nor is a path such as `missing.py`.
"""

TOOL = """\
import argparse
p = argparse.ArgumentParser(epilog="--listed_only_in_the_epilog is not a flag")
p.add_argument("--alpha")
p.add_argument("--beta", action="store_true")
p.parse_args()
"""


@pytest.fixture
def sample_root(tmp_path):
    (tmp_path / "tool.py").write_text(TOOL)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tool.py").write_text(TOOL)
    (tmp_path / "Makefile").write_text(".PHONY: hello\nhello: tool.py\n\techo hi\n")
    return str(tmp_path)


def test_parser_reports_each_bad_command_of_a_sample_and_nothing_else(sample_root):
    problems, count = check_markdown(sample_root, SAMPLE, "sample.md")
    assert sorted(problems) == sorted([
        "sample.md:7: tool.py: unknown flag --gamma",
        "sample.md:9: make nothere: no such target in Makefile",
        "sample.md:18: tool.py: unknown flag --listed_only_in_the_epilog",
        "sample.md:19: missing.py: no such script",
        "sample.md:20: tool.py: unknown flag --gamma",
        "sample.md:24: tool.py: unknown flag --eta",
        "sample.md:26: tool.py: unknown flag --epsilon",
        "sample.md:26: python -m pkg.tool: unknown flag --zeta",
    ])
    # tool.py (fenced), make hello, make nothere, tool.py, missing.py and tool.py (indented), four inline spans
    assert count == 10


def test_parser_on_the_real_scripts_rejects_a_flag_they_lack():
    sample = "    python train_ssd_network.py --train_dir=x --dataset_dir=y --no_such_flag=1\n"
    problems, count = check_markdown(ROOT, "text\n\n" + sample, "x.md")
    assert count == 1
    assert problems == ["x.md:3: train_ssd_network.py: unknown flag --no_such_flag"]
