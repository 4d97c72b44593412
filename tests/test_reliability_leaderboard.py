"""Issue 16 item 4: ``harness leaderboard`` never overwrites the repository's published files by default."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from leaderboard_data import build_store

from harness.cli import cli
from harness.leaderboard.generate import FILES

REPO = Path(__file__).resolve().parents[1]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("lb") / "r.db")


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout's shape: the generator's code folder with the published leaderboard inside it."""
    code = tmp_path / "leaderboard"
    (code / "published" / "studies").mkdir(parents=True)
    (code / "generate.py").write_text("# the generator\n")
    for name in FILES:
        (code / "published" / name).write_text(f"published {name}\n")
        (code / "published" / "studies" / name).write_text(f"published study {name}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_default_writes_beside_the_user_not_into_the_published_files(store_path, checkout):
    before = digest(checkout / "leaderboard")
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    assert digest(checkout / "leaderboard") == before, "the published leaderboard was touched"
    assert sorted(p.name for p in (checkout / "leaderboard-out").iterdir()) == sorted(FILES)
    again = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path)])  # its own folder: fine
    assert again.exit_code == 0, again.output


def test_a_folder_with_other_files_is_refused_unless_forced(store_path, checkout):
    before = digest(checkout / "leaderboard")
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path), "--out", "leaderboard"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and "generate.py" in lines[0] and "--force" in lines[0]
    assert digest(checkout / "leaderboard") == before, "nothing may be written on refusal"

    web = checkout / "site"
    web.mkdir()
    (web / "about.html").write_text("mine")
    forced = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path), "--out", "site", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (web / "about.html").read_text() == "mine" and (web / "index.html").is_file()


def test_regenerating_the_published_folder_is_an_explicit_out(store_path, checkout):
    published = checkout / "leaderboard" / "published"
    result = CliRunner().invoke(cli, ["leaderboard", "--store", str(store_path), "--out", str(published)])
    assert result.exit_code == 0, result.output  # only the generator's files (and studies/ of the same): allowed
    assert (published / "leaderboard.md").read_text() != "published leaderboard.md\n"
    assert (published / "studies" / "leaderboard.md").read_text() == "published study leaderboard.md\n"


def test_the_repository_keeps_published_files_out_of_the_code_folder():
    code = REPO / "leaderboard"
    assert not [name for name in FILES if (code / name).exists()], "generated files beside the generator's code"
    assert not (code / "studies").exists()
    for folder in (code / "published", code / "published" / "studies"):
        assert all((folder / name).is_file() for name in ("leaderboard.md", "index.html", "leaderboard.json")), folder
        assert {p.name for p in folder.iterdir() if p.is_file()} <= set(FILES), folder
    readme = (REPO / "README.md").read_text()
    assert "leaderboard/published/" in readme and "`leaderboard/studies/`" not in readme
