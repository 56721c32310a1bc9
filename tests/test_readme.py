"""The README's example runs, and .ci/run runs exactly the README's test command."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    provider, onnx_value, torch_value, ref_value = capsys.readouterr().out.split()
    assert provider == "CPUExecutionProvider"
    assert abs(float(onnx_value) - float(ref_value)) < 1e-5
    assert abs(float(torch_value) - float(ref_value)) < 1e-5


def test_ci_runs_the_readme_test_command():
    commands = [line for line in README.splitlines() if line.startswith("python3 -m pip install")]
    assert len(commands) == 2
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3")]
    assert ci == [commands[1]]


def test_equivalence_table_names_existing_tests():
    """Each row of README's equivalence table names a test that exists (file and function)."""
    import ast
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent
    text = (root.parent / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Equivalences with other libraries"):text.index("## Layout")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 12
    for row in rows:
        cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`|`::(test_\w+)`", row)
        assert cited, row
        current = None
        for path, name, more in cited:
            current = path or current
            tree = ast.parse((root / current).read_text(encoding="utf-8"))
            defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert (name or more) in defined, (current, name or more)
