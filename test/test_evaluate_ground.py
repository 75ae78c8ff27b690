"""tools/evaluate_ground: the ground outputs scored against the projection of the labels' own."""

from __future__ import annotations

import json
import re

from lednet_ros.tools import evaluate_ground


def cityscapes_camera(path, image_size=(64, 32)):
    """Write a Cityscapes camera file for ``image_size`` frames; return its path."""
    scale = image_size[0] / 2048
    path.write_text(json.dumps({
        "image_size": list(image_size),
        "intrinsic": {"fx": 2262.5 * scale, "fy": 2265.3 * scale, "u0": 1097.0 * scale,
                      "v0": 513.1 * scale},
        "extrinsic": {"x": 1.7, "y": 0.1, "z": 1.22, "roll": 0.0, "pitch": 0.2, "yaw": 0.0}}))
    return path


def test_evaluate_ground_prints_every_score_and_refuses_a_bad_camera(tiny_cityscapes, tmp_path,
                                                                    capsys):
    camera = cityscapes_camera(tmp_path / "camera.json")
    args = ["--data-path", str(tiny_cityscapes), "--engine", "torch", "--input-size", "64x32",
            "--labels-size", "64x32", "--range", "10", "--width", "10"]
    assert evaluate_ground.main(args + ["--camera", str(camera)]) == 0
    out = capsys.readouterr().out
    assert "10 frames (all)" in out and "footprint run 0.03 of the height (1 px)" in out
    for score in ("cells known", "free IoU", "blocked IoU", "free cells truly blocked",
                  "obstacle cells blocked \\(1 cell\\)", "obstacle points precision",
                  "obstacle points recall", "free points on blocked cells"):
        assert re.search(rf"\| {score} \| (n/a|\d+\.\d) \|", out), score
    camera.write_text('{"intrinsic": {"fx": 1}}')
    assert evaluate_ground.main(args + ["--camera", str(camera)]) == 1
    assert re.search(r"camera file .*camera.json: KeyError\('extrinsic'\); expected a "
                     "Cityscapes camera file", capsys.readouterr().err)


def test_footprint_rules_let_the_costmap_know_more_of_real_cityscapes(cityscapes_root,
                                                                     run6_weights, capsys):
    """The camera-bound run-6 weights, seven frames (docs/nav2.md).

    Cells known 34.6% with single-pixel footprints, 56.1% with the defaults (run 0.03,
    confidence 0.7); free cells truly blocked 1.8% and 1.7%.
    """
    scores = []
    for run, confidence in (("0", "0"), ("0.03", "0.7")):
        assert evaluate_ground.main(["--data-path", str(cityscapes_root), "--engine", "torch",
                                     "--weights", str(run6_weights),
                                     "--footprint-run", run,
                                     "--footprint-confidence", confidence,
                                     # the footprint rules alone (test_fail_safe: the rest)
                                     "--free-confidence", "0", "--free-margin", "0",
                                     "--no-health"]) == 0
        out = capsys.readouterr().out
        scores.append([float(re.search(rf"\| {name} \| ([\d.]+) \|", out).group(1))
                       for name in ("cells known", "free cells truly blocked")])
    (known_before, _), (known, wrongly_free) = scores
    assert known > max(50.0, known_before + 10.0) and wrongly_free < 3.0, scores
