"""The out-of-sample comparisons (InferenceX's DeepSeek-R1 points, TensorRT-LLM v0.17's table) keep running (tools/)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    import importlib
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "tools"))


def test_every_extracted_point_is_estimated(capsys):
    assert _tool("compare_inferencex").main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    points = json.loads((ROOT / "tools" / "inferencex_points.json").read_text())["points"]
    assert out["all"]["points"] + len(out["skipped"]) == len(points) > 100
    assert not out["skipped"]
    assert {"b200", "h200", "mi300x", "mi325x", "mi355x"} <= set(out["groups"])


def test_the_trtllm_v017_comparison_estimates_every_point(capsys):
    assert _tool("compare_trtllm_v017").main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["groups"]["all"]["points"] == len(out["points"]) == 104
    assert all(p["estimate"] > 0 for p in out["points"])
