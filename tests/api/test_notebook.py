"""examples/intro.ipynb runs top to bottom against the local sandbox."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_intro_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.aws import sandbox

    # A kernel spec for this interpreter, so the notebook runs with the nestcloud under test
    # whatever `python` is on PATH.
    spec_dir = tmp_path / "jupyter" / "kernels" / "nestcloud-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nestcloud test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(EXAMPLES / "intro.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="nestcloud-test", timeout=240,
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    try:
        client.execute()
    finally:
        sandbox.stop()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    html = [o["data"]["text/html"] for outs in outputs.values() for o in outs
            if o.get("output_type") == "execute_result" and "text/html" in o.get("data", {})]
    # plan, check, cost, up, status, down render as tables.
    assert len(html) == 6
    assert html[0].startswith("<table><caption>12 seat(s) of 4 vCPU / 16 GiB")
    assert "price date" in html[0]
    assert "refused" in html[1] and "arm64" in html[1]
    assert "<td>firecracker-101</td>" in html[2]
    texts = [o["data"].get("text/plain", "") for outs in outputs.values() for o in outs
             if o.get("output_type") == "execute_result"]
    assert texts[-1] == "'lab removed'"
