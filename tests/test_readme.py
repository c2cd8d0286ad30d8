"""README's two opening commands are the ones CI and users run: keep them honest."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _code_lines() -> list[str]:
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("    ") and line.strip()]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    first, second = _code_lines()[:2]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == second
    assert "pytest" in second and ".[test]" in second


def test_first_command_installs_and_runs_against_the_sandbox() -> None:
    first = _code_lines()[0]
    assert "pip install" in first and "[sandbox]" in first
    assert "nestcloud launch --sandbox" in first and "nestcloud ls --sandbox" in first


def test_readme_names_no_unfinished_placeholder() -> None:
    assert "BENCH-RESULTS" not in (ROOT / "README.md").read_text()
