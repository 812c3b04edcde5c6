"""Oracle: the README itself — its API snippet runs and prints what the README says it prints."""
import contextlib
import csv
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


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



def test_readme_s_ranges_hold_every_measured_run():
    """The README's expected ranges cover every run docs/running.md's cross-machine table
    reports (an L₅₀₀₀ of −77.93 with one thread once fell outside "−77.5 to −77.8"), and the
    per-epoch CSV the README links is the run the sentence names (it was numpyvae's own, linked
    as the PyTorch reference's). Oracle: the two documents and the CSV."""
    running = (ROOT / "docs" / "running.md").read_text()
    section = running.split("## The README's numbers on other machines", 1)[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines()
            if line.startswith("| ") and ("Zen" in line or "EPYC" in line)]
    elbo = [float(r[2].split("=")[0].strip()) for r in rows]
    l5000 = [float(r[3].strip().replace("−", "-")) for r in rows
             if r[3:] and r[3].strip() != "—"]
    low, high = map(float, re.search(r"expect (\d+\.\d+)–(\d+\.\d+)", README).groups())
    l_high, l_low = (-float(v) for v in re.search(r"L₅₀₀₀ of −(\d+\.\d+) to −(\d+\.\d+)",
                                                    README).groups())
    # the ranges are stated to one decimal: a value is in one when it rounds into it
    assert len(rows) >= 5 and all(low <= round(v, 1) <= high for v in elbo), elbo
    assert len(l5000) >= 3 and all(l_low <= round(v, 1) <= l_high for v in l5000), l5000
    sentence = README.split("(docs/default-run-metrics.csv)")[0].rsplit(". ", 1)[1]
    last = list(csv.DictReader(open(ROOT / "docs" / "default-run-metrics.csv")))[-1]
    assert f"{float(last['test_neg_elbo']):.2f}" in sentence and "reference" not in sentence
