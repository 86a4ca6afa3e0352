"""docs/spiking-scripts.md, run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "spiking-scripts.md"


def test_the_spiking_script_runs_as_written_and_learns(tmp_path, monkeypatch, capsys):
    (script,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(script, str(DOC), "exec", dont_inherit=True), namespace)
    out = capsys.readouterr().out
    assert re.search(r"train 0\.\d\d, test 0\.\d\d, \d+ samples/s", out), out
    assert namespace["test"].accuracy > 0.5  # 10 classes: chance is 0.1
    changed = namespace["learnt"].hidden[0] - namespace["weights"].hidden[0]
    assert (changed != 0).mean() > 0.5  # the rule changed most hidden weights
    indices, times = namespace["indices"], namespace["times"]
    assert len(indices) == len(times) > 0 and indices.max() < 100  # 100 hidden neurons
