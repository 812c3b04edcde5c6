"""Oracle: the README itself — its API snippet runs and prints what the README says it prints."""
import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_api_snippet_runs_and_prints_what_it_shows():
    api = README.split("## The API", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", api, flags=re.S)
    i = next(i for i, (lang, code) in enumerate(blocks) if lang == "python")
    code, shown = blocks[i][1], blocks[i + 1][1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue() == shown


def test_readme_opens_with_the_two_commands_ci_runs():
    lines = [l for l in README.splitlines() if l.startswith("python3 -m venv .venv")]
    assert "python -m numpyvae.train" in lines[0]
    assert "pytest" in lines[1]
