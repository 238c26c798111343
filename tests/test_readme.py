"""The README's Python API example runs as written (in a folder laid out as after make demo)."""
from __future__ import annotations

import re

from lib.loader import SHIPPED_PRIOR
from lib.synthetic import coco_example
from tests.helpers import ROOT


def test_the_readme_api_example_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "checkpoint" / "demo").mkdir(parents=True)  # what make demo trains: a trained model (the shipped one)
    (tmp_path / "checkpoint" / "demo" / "best_model.pth").symlink_to(SHIPPED_PRIOR / "checkpoint.pth")
    coco_example(tmp_path / "data" / "example")                  # what make demo writes for run.lift
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)  # noqa: S102  (the README's own code)
    assert namespace["hyps"].shape == (4, 20, 17, 3) and namespace["pose"].shape == (4, 17, 3)
    assert namespace["lifted"].pose3d.shape[-2:] == (17, 3)
    assert [f.name for f in namespace["files"]] == ["track_0.bvh", "track_1.bvh", "poses.csv"]
    assert namespace["video"].pose3d_world.shape == namespace["video"].pose3d.shape
