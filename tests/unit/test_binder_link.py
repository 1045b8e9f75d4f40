"""binder/link.py turns the remote of a hosted copy into the Binder link the README tells users to open."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("binder_link", ROOT / "binder" / "link.py")
assert spec and spec.loader
link = importlib.util.module_from_spec(spec)
spec.loader.exec_module(link)

LAB = "?urlpath=lab%2Ftree%2Fnotebooks%2F01-quickstart.ipynb"


@pytest.mark.parametrize(
    "remote",
    ["https://github.com/acme/workbench.git", "https://github.com/acme/workbench", "git@github.com:acme/workbench.git"],
)
def test_github_remotes_get_the_short_form(remote: str) -> None:
    assert link.binder_url(remote) == f"https://mybinder.org/v2/gh/acme/workbench/HEAD{LAB}"


def test_gitlab_groups_are_one_segment_and_other_hosts_the_git_form() -> None:
    assert link.binder_url("https://gitlab.com/acme/data/workbench.git", ref="v1") == (
        f"https://mybinder.org/v2/gl/acme%2Fdata%2Fworkbench/v1{LAB}"
    )
    assert link.binder_url("https://git.example.org/workbench.git") == (
        f"https://mybinder.org/v2/git/https%3A%2F%2Fgit.example.org%2Fworkbench.git/HEAD{LAB}"
    )


def test_a_remote_binder_cannot_reach_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="not an http"):
        link.binder_url("/home/me/workbench")
    with pytest.raises(ValueError, match="remote is empty"):
        link.binder_url(" ")


def test_a_clone_without_origin_says_so(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "link.py").write_text((ROOT / "binder" / "link.py").read_text())
    out = subprocess.run([sys.executable, str(tmp_path / "binder" / "link.py")], capture_output=True, text=True)
    assert out.returncode == 2 and "no remote 'origin'" in out.stderr


def test_the_readme_has_no_placeholder_link() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "OWNER" not in readme
    assert "python binder/link.py" in readme
