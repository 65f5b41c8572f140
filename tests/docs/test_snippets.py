"""The code blocks of docs/*.md: the data-team snippets run against a tiny publication and find
the right clips; the latent-cache snippet reads a tiny store; every other Python block compiles and
imports names that exist; every `aam-pipeline` line in a shell block uses options its --help lists."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.docs.conftest import DIM, Publication, Store

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r'^PUBLISHED = "published".*$', re.MULTILINE)


def _blocks(language: str) -> list[tuple[str, int, str]]:
    """(file name, index, code) of every fenced block tagged `language` under docs/."""
    found = []
    for doc in sorted(DOCS.rglob("*.md")):
        blocks = [code for lang, code in BLOCK.findall(doc.read_text()) if lang == language]
        found += [(str(doc.relative_to(DOCS)), i, code) for i, code in enumerate(blocks)]
    return found


STORE_LINE = re.compile(r'^STORE = "work/demo.zarr".*$', re.MULTILINE)
DATA_TEAM = [code for name, _, code in _blocks("python") if name == "data-teams.md"]
STORE_SNIPPETS = [code for _, _, code in _blocks("python") if STORE_LINE.search(code)]
OTHER_PYTHON = [b for b in _blocks("python") if b[0] != "data-teams.md" and not STORE_LINE.search(b[2])]


def _run(snippet: str, publication: Publication) -> dict[str, Any]:
    assert PLACEHOLDER.search(snippet), 'every data-team snippet starts from PUBLISHED = "published"'
    code = PLACEHOLDER.sub(f"PUBLISHED = {str(publication.root)!r}", snippet)
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    exec(compile(code, str(DOCS / "data-teams.md"), "exec"), namespace)
    return namespace


def test_data_teams_has_one_snippet_per_reader() -> None:
    assert len(DATA_TEAM) == 5
    for library in ("duckdb", "polars", "pyarrow.dataset", "faiss"):
        assert sum(f"import {library}" in s for s in DATA_TEAM) >= 1, library
    for snippet in DATA_TEAM:
        assert not re.search(r'QUERY = "', snippet), "take QUERY from the data, not a literal id"


@pytest.mark.parametrize("number", range(len(DATA_TEAM)))
def test_data_team_snippet_runs_and_answers(publication: Publication, number: int) -> None:
    namespace = _run(DATA_TEAM[number], publication)
    if "top_k" not in namespace:  # the metadata snippet
        assert namespace["leakage"]["measured"] is True and namespace["D"] == DIM
        assert namespace["kv"]["aam.normalisation"] == "none"
        return
    query, top_k = namespace["QUERY"], namespace["top_k"]
    assert query in publication.clip_ids
    assert [clip_id for clip_id, _ in top_k] == publication.top_k(query)
    scores = [float(score) for _, score in top_k]
    assert abs(scores[0] - 1.0) < 1e-5 and scores == sorted(scores, reverse=True)


def test_latent_cache_snippet_reads_a_store(store: Store) -> None:
    assert len(STORE_SNIPPETS) == 1, "docs/latent-cache.md reads a store"
    code = STORE_LINE.sub(f"STORE = {str(store.url)!r}", STORE_SNIPPETS[0])
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    exec(compile(code, str(DOCS / "latent-cache.md"), "exec"), namespace)
    view = namespace["view"]
    assert view.videos.num_rows == store.videos and view.motion.shape == (store.motion_clips, view.attrs.dim)
    assert namespace["seen"] == store.motion_clips
    assert list(namespace["failed"].values()) == ["corrupt"]


@pytest.mark.parametrize(("name", "number", "code"), OTHER_PYTHON, ids=lambda v: str(v)[:30])
def test_python_block_compiles_and_imports_exist(name: str, number: int, code: str) -> None:
    tree = ast.parse(code, filename=f"{name}#{number}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{name}: {node.module} has no {alias.name}"


def _command_lines() -> list[tuple[str, list[str]]]:
    """(file, argv after `aam-pipeline`) of every aam-pipeline line in the shell blocks of docs/*.md."""
    lines = []
    for name, _, code in _blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("aam-pipeline "):
                lines.append((name, shlex.split(line)[1:]))
    return lines


@pytest.fixture(scope="module")
def help_texts() -> dict[str, str]:
    runner = CliRunner()
    env = {"COLUMNS": "400", "TERMINAL_WIDTH": "400", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    verbs = {argv[0] for _, argv in _command_lines()}
    texts = {}
    for verb in verbs:
        result = runner.invoke(app, [verb, "--help"], env={**os.environ, **env})
        assert result.exit_code == 0, f"aam-pipeline {verb} --help: {result.output}"
        texts[verb] = result.output
    return texts


def test_shell_blocks_use_existing_verbs_and_options(help_texts: dict[str, str]) -> None:
    lines = _command_lines()
    assert len(lines) >= 10
    for name, argv in lines:
        verb, options = argv[0], [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
        for option in options:
            assert re.search(rf"{re.escape(option)}\b", help_texts[verb]), f"{name}: {verb} has no {option}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    pages = [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))]
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s:]+\.md)(?:#([^)]*))?\)", page.read_text()):
            linked = (page.parent / target).resolve()
            assert linked.exists(), f"{page.name}: {target} does not exist"
            if anchor:
                text = BLOCK.sub("", linked.read_text())  # '#' lines inside code blocks are no headings
                headings = re.findall(r"^#+ (.*)$", text, flags=re.MULTILINE)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: {target} has no #{anchor}"
