"""The out-of-sample comparison against InferenceX's DeepSeek-R1 points keeps running (tools/)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_extracted_point_is_estimated(capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import compare_inferencex
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert compare_inferencex.main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    points = json.loads((ROOT / "tools" / "inferencex_points.json").read_text())["points"]
    assert out["all"]["points"] + len(out["skipped"]) == len(points) > 100
    assert not out["skipped"]
    assert {"b200", "h200", "mi300x", "mi325x", "mi355x"} <= set(out["groups"])
