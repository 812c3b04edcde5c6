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


def test_readme_gradcheck_output_is_what_the_command_prints(capsys):
    """The block after `python -m reference.gradcheck`: the same header (less the numbers that
    depend on the machine: torch's version) and the same tensors, each OK."""
    from reference import gradcheck
    shown = README.split("python -m reference.gradcheck\n```\n```\n", 1)[1].split("```")[0]
    assert gradcheck.main([]) == 0
    printed = capsys.readouterr().out

    def table(text):
        return [(l.split()[0], l.split()[-1]) for l in text.splitlines() if l.endswith(" OK")]
    assert table(shown) == table(printed) and len(table(shown)) == 19
    assert shown.splitlines()[-1] == printed.splitlines()[-1]
    assert shown.split(" vs torch")[0] == printed.split(" vs torch")[0]


def test_readme_usage_commands_parse():
    """Every `python -m …` line of README's "Using it" block: a command that exists, flags it
    accepts (its own parser, not a run: some of them take hours)."""
    import importlib
    block = README.split("## Using it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [l.split("#", 1)[0].split() for l in block.splitlines() if l.startswith("python")]
    assert len(commands) >= 10
    for cmd in commands:
        assert cmd[:2] == ["python", "-m"], cmd
        module = importlib.import_module(cmd[2])
        if cmd[2] == "numpyvae":
            assert cmd[3:] == []
            continue
        module.build_parser().parse_args(cmd[3:])         # SystemExit 2 on an unknown flag

