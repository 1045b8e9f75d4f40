"""Print the mybinder.org link that opens this copy of the repository on the quickstart notebook.

    python binder/link.py                      # from the git remote `origin` of this clone
    python binder/link.py https://github.com/acme/workbench.git
    python binder/link.py --ref v0.2 --notebook notebooks/02-consumer-groups.ipynb

Binder builds a repository from where it is hosted, so the link depends on the host of your copy:
GitHub and GitLab remotes get Binder's short `gh/` and `gl/` forms, any other public git URL the
general `git/` form. A clone without a remote has no link (Binder cannot reach it): the script says so
and exits with status 2.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

BINDER = "https://mybinder.org/v2"
QUICKSTART = "notebooks/01-quickstart.ipynb"
_HOSTED = re.compile(r"^(?:https?://|ssh://git@|git@)(github\.com|gitlab\.com)[/:](?P<path>[^?#]+?)(?:\.git)?/?$")


def binder_url(remote: str, ref: str = "HEAD", notebook: str = QUICKSTART) -> str:
    """The Binder link for a git remote URL (https or ssh form), opening JupyterLab on `notebook`."""
    remote = remote.strip()
    if not remote:
        raise ValueError("remote is empty: pass the URL of a public git repository")
    lab = "?urlpath=" + quote(f"lab/tree/{notebook}", safe="")
    m = _HOSTED.match(remote)
    if m:
        prefix = "gh" if m.group(1) == "github.com" else "gl"
        path = m.group("path")
        if prefix == "gl":  # GitLab groups nest: Binder wants the whole path as one segment
            path = quote(path, safe="")
        return f"{BINDER}/{prefix}/{path}/{quote(ref, safe='')}{lab}"
    if not remote.startswith(("https://", "http://")):
        raise ValueError(f"remote {remote!r} is not an http(s) URL: Binder can only build public repositories")
    return f"{BINDER}/git/{quote(remote, safe='')}/{quote(ref, safe='')}{lab}"


def _origin(repo: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(repo), "remote", "get-url", "origin"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("remote", nargs="?", help="git URL of the hosted copy (default: this clone's origin)")
    parser.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    parser.add_argument("--notebook", default=QUICKSTART, help=f"notebook to open (default {QUICKSTART})")
    args = parser.parse_args(argv)
    remote = args.remote or _origin(Path(__file__).resolve().parent.parent)
    if remote is None:
        print("this clone has no remote 'origin': push it to a public host, or pass its URL", file=sys.stderr)
        return 2
    try:
        print(binder_url(remote, args.ref, args.notebook))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
