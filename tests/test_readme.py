"""The README's commands run as printed: no placeholders, existing scripts, options those scripts accept.

Cheap checks, no training: every ``bash`` block is read line by line as the shell would split it; each
``python scripts/<name>.py`` (or ``torchrun ... scripts/train.py``) command must name a script that exists and
only options that script takes (train.py's through hydra's composition against the typed schema, the other
scripts' through their option dataclasses); every ``$VARIABLE`` must be set by an earlier command of the
README; every ``python`` block must compile.
"""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pqn_torch.training.options import parse_options

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")  # <run dir>, <time>, <file>.onnx: the shell reads them as redirects
SCRIPT_OPTIONS = {"evaluate.py": "EvaluateOptions", "export.py": "ExportOptions"}


def blocks(language: str, text: str = README) -> list[str]:
    """The code blocks of ``language``, continuation lines (``\\`` at the end) joined."""
    return [block.replace("\\\n", " ") for block in re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)]


def commands(text: str = README) -> list[list[str]]:
    """Each command line of the bash blocks, split as the shell splits it (comments dropped)."""
    return [shlex.split(line, comments=True) for block in blocks("bash", text) for line in block.splitlines()]


def script_arguments(words: list[str]) -> tuple[str, list[str]] | None:
    """``(script name, its arguments)`` for a command that runs one of scripts/, else None."""
    for index, word in enumerate(words):
        if word.startswith("scripts/") and word.endswith(".py"):
            return word.removeprefix("scripts/"), words[index + 1 :]
    return None


def problems(text: str) -> list[str]:
    """What would make a command of ``text`` fail as printed (empty: nothing found)."""
    found = []
    assigned: set[str] = set()
    for block in blocks("bash", text):
        for line in block.splitlines():
            code = line.split(" #")[0]
            if PLACEHOLDER.search(code):
                found.append(f"placeholder in: {line.strip()}")
            for variable in re.findall(r"\$([A-Z_]+)", code):
                if variable not in assigned:
                    found.append(f"${variable} used before a command sets it: {line.strip()}")
            assigned.update(re.findall(r"^([A-Z_]+)=", code.strip()))
    for words in commands(text):
        called = script_arguments(words)
        if called is None:
            continue
        name, arguments = called
        if not (REPO / "scripts" / name).is_file():
            found.append(f"no script scripts/{name}")
            continue
        arguments = [argument.replace("$", "") for argument in arguments]  # a variable's value: any path
        try:
            check_options(name, arguments)
        except Exception as error:  # hydra, omegaconf and the scripts' own errors: the command would fail
            found.append(f"scripts/{name} {' '.join(arguments)}: {error}")
    return found


def check_options(name: str, arguments: list[str]) -> None:
    if name == "train.py":
        sweep = "-m" in arguments or "--multirun" in arguments
        overrides = [a.split(",")[0] if sweep else a for a in arguments if "=" in a and not a.startswith("-")]
        with initialize_config_dir(version_base=None, config_dir=str(REPO / "configs")):
            compose(config_name="config", overrides=overrides)
    elif name in SCRIPT_OPTIONS:
        spec = importlib.util.spec_from_file_location(f"readme_{name[:-3]}", REPO / "scripts" / name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        parse_options(name, arguments, getattr(module, SCRIPT_OPTIONS[name]))
    elif name == "plot.py":
        unknown = {a.split("=")[0] for a in arguments if "=" in a} - {"output"}
        if unknown or not any("=" not in a for a in arguments):
            raise ValueError(f"plot.py takes run dirs and output=, got {arguments}")
    else:
        raise ValueError(f"the README test does not know the options of {name}")


def test_every_readme_command_runs_as_printed():
    assert len(commands()) >= 10  # the quick start and the configuration block at least
    assert problems(README) == []


def test_the_check_finds_what_would_fail():
    broken = (
        "```bash\n"
        "python scripts/evaluate.py checkpoint=outputs/CheetahRun/<run dir> video=true\n"
        "python scripts/train.py task=CheetahRun alg.num_env=3\n"
        "python scripts/export.py checkpoint=$RUN outptu=a.onnx\n"
        "python scripts/missing.py\n"
        "```\n"
    )
    found = problems(broken)
    assert [line.split(":")[0] for line in found] == [
        "placeholder in",
        "$RUN used before a command sets it",
        "scripts/evaluate.py checkpoint=outputs/CheetahRun/<run dir> video=true",  # '<run' is not a value either
        "scripts/train.py task=CheetahRun alg.num_env=3",
        "scripts/export.py checkpoint=RUN outptu=a.onnx",
        "no script scripts/missing.py",
    ], found


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_blocks_compile(index):
    compile(blocks("python")[index], f"README.md python block {index}", "exec")


def test_the_quick_start_shows_the_test_command_ci_runs():
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("python -m pytest")]
    quick_start = [line.split("  #")[0].strip() for line in blocks("bash")[0].splitlines()]
    assert ci and ci[0] in quick_start


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("docs/*.md"))])
def test_links_between_the_readme_and_docs_reach_their_files_and_headings(page):
    source = REPO / page
    text = re.sub(r"^```.*?^```", "", source.read_text(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        path = (source.parent / file).resolve() if file else source
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in heading_anchors(path)):
            broken.append(target)
    assert broken == []
