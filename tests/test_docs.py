"""README and docs/: short README, links that resolve, every page reachable, the set-up commands first.

Links are read with a regular expression rather than a Markdown library: the project has none, and
the rule (inline links and images outside code) is all the documentation uses.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_BYTES = 15_000
README_MAX_LINE = 200
FIRST_SCREEN_LINES = 20  # the README lines a newcomer sees before scrolling
SETUP_COMMANDS = ("make quickstart", "make test")
# Pages other sessions are writing; links to them may dangle until they land. The lead empties this.
PENDING: set[str] = set()
# Text moved out of README for the owner of docs/tensorboard.md to merge; not linked from README.
TEMPORARY: set[str] = set()

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
TOP_FOLDERS = "neural_echos|callbacks|datamodules|lightning_modules|configs|scripts|benchmarks|tests|docs"
CODE_PATH = re.compile(rf"`((?:{TOP_FOLDERS})/[\w./-]*\w)(?:::(\w+))?`")
OLD_PATHS = re.compile(r"`(?:models|tools|plugins)/|`cli\.py`|`cli_configs\.py`")


def prose(page: Path) -> str:
    """The page without its fenced code blocks and inline code spans (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def relative(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        result.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return result


def test_readme_is_short_and_its_lines_are_readable():
    assert README.stat().st_size <= README_MAX_BYTES
    lines = README.read_text(encoding="utf-8").splitlines()
    long = [number for number, line in enumerate(lines, 1) if len(line) > README_MAX_LINE]
    assert long == [], f"README lines over {README_MAX_LINE} characters: {long}"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        name = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(resolved)
        if name in PENDING and not resolved.exists():
            continue
        if not resolved.exists():
            broken.append(f"{target}: no file {name}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {name}")
    assert broken == []


def test_every_docs_page_is_linked_from_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    unlinked = [
        relative(page) for page in DOCS if page.resolve() not in linked and relative(page) not in TEMPORARY
    ]
    assert unlinked == []
    for name in PENDING:  # each pending page, once it lands, is already linked
        assert (REPO / name).resolve() in linked, name


def test_the_setup_commands_and_the_picture_are_on_the_first_screen():
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES])
    for command in SETUP_COMMANDS:
        assert re.search(rf"^{command}\s", first_screen, re.MULTILINE), command
    assert re.search(r"!\[[^\]]+\]\(docs/images/[\w.-]+\.png\)", first_screen)
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for command in SETUP_COMMANDS:  # they are real targets, and CI runs the second one
        assert re.search(rf"^{command.split()[1]}:", makefile, re.MULTILINE), command
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_picture_is_small():
    for target in links(README):
        if target.endswith(".png"):
            assert (README.parent / target).stat().st_size < 300_000, target


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_paths_and_tests_named_in_the_docs_exist(page):
    """A path in code style names a file or folder of the repository; `file.py::test_name` a test in it."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    missing = []
    for path, test in CODE_PATH.findall(text):
        if not (REPO / path).exists():
            missing.append(path)
        elif test and not re.search(rf"^\s*def {test}\(", (REPO / path).read_text("utf-8"), re.MULTILINE):
            missing.append(f"{path}::{test}")
    assert missing == []
    assert OLD_PATHS.findall(text) == [], "paths from before the move under neural_echos/"


DOTTED = re.compile(r"`((?:neural_echos|callbacks|datamodules|lightning_modules)(?:\.\w+)+)")


def defines(module: Path, name: str) -> bool:
    """Whether ``module`` (a .py file or a package folder) defines or imports ``name`` at its top level."""
    source = module / "__init__.py" if module.is_dir() else module
    pattern = rf"^(?:def|class) {name}\b|^{name}\s*[:=]|^from \S+ import .*\b{name}\b"
    return bool(re.search(pattern, source.read_text("utf-8"), re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_dotted_names_in_the_docs_exist(page):
    """`package.module.name` names a module of the repository, and at most one name defined in it."""
    missing = []
    for dotted in DOTTED.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        parts = dotted.split(".")
        path, rest = REPO, []
        for i, part in enumerate(parts):
            if (path / part).is_dir():
                path = path / part
            elif (path / f"{part}.py").is_file():
                path, rest = path / f"{part}.py", parts[i + 1 :]
                break
            else:
                rest = parts[i:]
                break
        if len(rest) > 1 or (rest and not defines(path, rest[0])):
            missing.append(dotted)
    assert missing == []


def compose_script():
    """docs/images/compose_readme_figure.py, which is a script in a folder that is no package."""
    path = REPO / "docs" / "images" / "compose_readme_figure.py"
    spec = importlib.util.spec_from_file_location("compose_readme_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_figure_stacks_analyzes_pictures_under_its_numbers(tmp_path):
    summary = {
        "kernels": 1234,
        "method": "template",
        "proportions": {"on_center": 0.058, "off_center": 0.064},
        "chance": {"on_center": 0.006, "off_center": 0.005},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    Image.new("RGB", (300, 100), "red").save(tmp_path / "centroids.png")
    Image.new("RGB", (200, 50), "blue").save(tmp_path / "taxonomy.png")
    script = compose_script()
    assert "on-center 5.8% (chance 0.6%), off-center 6.4% (chance 0.5%)" in script.header_lines(summary)[1]
    assert script.main([str(tmp_path), str(tmp_path / "out.png")]) == 0
    picture = Image.open(tmp_path / "out.png").convert("RGB")
    header = picture.height - 100 - (50 - script.TAXONOMY_TITLE_ROW) - script.MARGIN
    assert picture.width == 300 and header > 0
    assert picture.getpixel((150, header + 50)) == (255, 0, 0)  # the class means, unchanged
    assert picture.getpixel((100, header + 100 + 10)) == (0, 0, 255)  # the taxonomy below, its title row cut


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], "give two arguments"),
        (["."], "give two arguments"),
        (["{empty}", "out.png"], "lacks summary.json"),
    ],
)
def test_the_readme_figure_script_refuses_bad_input_in_one_line(tmp_path, capsys, arguments, message):
    arguments = [a.format(empty=tmp_path) for a in arguments]
    assert compose_script().main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
