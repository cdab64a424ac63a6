"""The ablation report: runs grouped into rows by their overrides, statistics, the default rule."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pfld.training.ablation import collect_rows, decide_default, grid_table, row_name, rows_table
from tests.conftest import ROOT


def _run(
    sweep: Path, number: int, row: str, seed: int, nme: float | None, profile: float = 0.2, down: float = 0.15
):
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"ablation={row}", f"seed={seed}"]))
    if nme is not None:
        metrics = {
            "val/nme": nme,
            "val/nme_profile": profile,
            "val/nme_head_down": down,
            "val/failure_rate": 0.3,
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_rows_group_seeds_and_give_mean_and_sample_std(tmp_path):
    _run(tmp_path / "a", 0, "l1_pose", 1, 0.10)
    _run(tmp_path / "a", 1, "l1_pose", 2, 0.12)
    _run(tmp_path / "b", 0, "l1_truth_none", 1, 0.09)
    _run(tmp_path / "b", 1, "l1_truth_none", 2, None)  # still running
    rows = collect_rows([tmp_path / "a", tmp_path / "b"])
    assert rows["l1_pose"].seeds == [1, 2]
    assert rows["l1_pose"].mean("val/nme") == pytest.approx(0.11)
    assert rows["l1_pose"].std("val/nme") == pytest.approx(math.sqrt(2) * 0.01)
    assert rows["l1_truth_none"].failed == 1 and math.isnan(rows["l1_truth_none"].std("val/nme"))
    table = rows_table(list(rows.values()))
    assert "0.1100 ± 0.0141" in table and "30.0 ± 0.0" in table and "+1 without metrics" in table
    assert "not run" in grid_table(rows) and "0.0900" in grid_table(rows)


def test_default_rule_needs_close_nme_and_better_profile_and_head_down(tmp_path):
    for seed, nme in ((1, 0.100), (2, 0.104)):
        _run(tmp_path / "s", seed, "l1_pose", seed, nme, profile=0.22, down=0.16)
    for seed, nme in ((1, 0.102), (2, 0.103)):
        _run(tmp_path / "s", 10 + seed, "l1_truth_none", seed, nme, profile=0.20, down=0.15)
    chosen, reason = decide_default(collect_rows([tmp_path / "s"]))
    assert chosen == "l1_truth_none", reason
    _run(tmp_path / "t", 0, "l1_pose", 1, 0.100, profile=0.22, down=0.16)
    _run(tmp_path / "t", 1, "l1_pose", 2, 0.101, profile=0.22, down=0.16)
    _run(tmp_path / "t", 2, "l1_truth_none", 1, 0.110, profile=0.20, down=0.15)  # beyond one std
    chosen, reason = decide_default(collect_rows([tmp_path / "t"]))
    assert chosen is None and "beyond one std" in reason


def test_script_writes_between_the_markers_and_keeps_the_text(tmp_path):
    _run(tmp_path / "s", 0, "l1_pose", 1, 0.10)
    _run(tmp_path / "s", 1, "l1_pose", 2, 0.11)
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Study\n\nhand-written\n<!-- generated:start -->\nold\n<!-- generated:end -->\ntail text\n"
    )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "ablations.py"),
            str(tmp_path / "s"),
            "--doc",
            str(doc),
            "--figures",
            str(tmp_path / "fig"),
            "--json",
            str(tmp_path / "a.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    text = doc.read_text()
    assert "hand-written" in text and "tail text" in text and "old" not in text
    assert "0.1050 ± 0.0071" in text
    figure = (tmp_path / "fig" / "ablation_nme.png").read_bytes()
    assert figure.startswith(b"\x89PNG") and len(figure) > 5000
    assert json.loads((tmp_path / "a.json").read_text())["l1_pose"]["seeds"] == [1, 2]


def test_rows_without_an_ablation_override_are_named_by_their_other_overrides():
    overrides = [
        "experiment=size_width",
        "data.input_size=96",
        "model.backbone.width=0.5",
        "seed=2",
        "cpu.threads=1",
    ]
    assert row_name(overrides) == "data.input_size=96 model.backbone.width=0.5"
    assert row_name(["ablation=l1_pose", "seed=1", "data.input_size=96"]) == "l1_pose"
    assert row_name(["seed=1", "experiment=loss_ablation"]) is None


def _cell_run(sweep: Path, number: int, size: int, width: float, seed: int, nme: float) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    overrides = [f"data.input_size={size}", f"model.backbone.width={width}", f"seed={seed}", "cpu.threads=1"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps({"val/nme": nme, "val/pose_mae": 3.5}))


def test_size_width_report_joins_costs_keeps_earlier_cells_and_marks_the_pareto_front(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from size_width import cell_of, pareto

    assert pareto([(1, 0.10), (2, 0.12), (3, 0.08), (3, 0.09)]) == [True, False, True, False]
    assert cell_of("data.input_size=96 model.backbone.width=0.5") == (96, 0.5)
    assert cell_of("l1_pose") is None and cell_of("loss=wing model.backbone.width=0.5") is None
    _cell_run(tmp_path / "s", 0, 96, 0.5, 1, 0.090)
    _cell_run(tmp_path / "s", 1, 96, 0.5, 2, 0.092)
    _cell_run(tmp_path / "s", 2, 128, 0.5, 1, 0.095)  # dearer and worse than 96 px: off the front
    cells = {"cells": {"112x0.25": {"seeds": [1, 2, 3], "val/nme": {"mean": 0.1, "std": 0.002}}}}
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    costs = [
        {"input": s, "width": w, "with_pose": False, "mmacs": m, "int8_ms": ms}
        for s, w, m, ms in ((112, 0.25, 21.0, 0.8), (96, 0.5, 53.8, 1.2), (128, 0.5, 96.1, 2.2))
    ]
    (tmp_path / "costs.json").write_text(json.dumps({"rows": costs}))
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- size_width:start -->\nold\n<!-- size_width:end -->\ntail\n")
    command = [sys.executable, str(ROOT / "scripts" / "size_width.py"), str(tmp_path / "s")]
    options = ["--cells", "cells.json", "--costs", "costs.json", "--doc", "doc.md", "--figure", "fig.png"]
    subprocess.run(command + options, check=True, capture_output=True, text=True, cwd=tmp_path)
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "old" not in text
    assert "| 112 | 0.25 | 21.0 | 0.80 | 3 | 0.1000 ± 0.0020 |" in text  # the earlier cell kept
    assert "| 96 | 0.5 | 53.8 | 1.20 | 2 | 0.0910 ± 0.0014 |" in text and text.count("| yes |") == 2
    assert set(json.loads((tmp_path / "cells.json").read_text())["cells"]) == {
        "112x0.25",
        "96x0.5",
        "128x0.5",
    }
    assert (tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")


def test_better_models_report_writes_its_section_and_keeps_the_other_rows(tmp_path):
    for row, seed, nme in (("base_e40", 1, 0.066), ("base_e40", 2, 0.068), ("distill_e40", 1, 0.064)):
        folder = tmp_path / "long" / f"{row}_s{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"val/nme": nme, "val/nme_profile": 0.12}))
    (tmp_path / "long" / "notes").mkdir()  # not a run: ignored
    doc, figures = tmp_path / "doc.md", tmp_path / "figures.json"
    doc.write_text(
        "a\n<!-- generated:start -->\nshort\n<!-- generated:end -->\nb\n<!-- long:start -->\nold\n<!-- long:end -->\nc\n"
    )
    figures.write_text(json.dumps({"base_e6": {"nme_mean": 0.0958}}))
    command = [sys.executable, str(ROOT / "scripts" / "better_models.py"), str(tmp_path / "long")]
    options = ["--section", "long", "--doc", str(doc), "--json", str(figures)]
    subprocess.run(command + options, check=True, capture_output=True, text=True)
    text = doc.read_text()
    assert "short" in text and "old" not in text and text.endswith("<!-- long:end -->\nc\n")
    assert "| `distill_e40` | 68-point faces + distillation" in text and "-0.0030 (-4.5 %)" in text
    kept = json.loads(figures.read_text())
    assert set(kept) == {"base_e6", "base_e40", "distill_e40"} and kept["base_e40"]["seeds"] == [1, 2]
    failed = subprocess.run(
        command + ["--section", "nowhere", "--doc", str(doc)], check=False, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "no <!-- nowhere:start -->" in failed.stderr


def test_better_models_reads_evaluate_reports_and_keeps_only_the_rows_asked_for(tmp_path):
    report = {  # evaluate.py's metrics.json
        "nme": 0.07,
        "failure_rate": 0.1,
        "auc": 0.35,
        "by_group": {"all": {"nme": 0.07, "faces": 9}, "profile": {"nme": 0.13, "faces": 2}},
        "pose_mae_deg": {"yaw": 2.0, "pitch": 4.0, "roll": 3.0, "faces": 9},
    }
    for row, seed in (("held_base_e40", 1), ("held_finalfit_e40", 1), ("base_e40", 1)):
        folder = tmp_path / "runs" / f"{row}_s{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(report))
    command = [sys.executable, str(ROOT / "scripts" / "better_models.py"), str(tmp_path / "runs")]
    printed = subprocess.run(
        command + ["--rows", "held_base_e40", "held_finalfit_e40"], check=True, capture_output=True, text=True
    ).stdout
    assert "| `held_finalfit_e40` | 1 | 0.0700 | 10.0 | 0.350 | - | 0.1300 |" in printed
    assert "| 3.00 |" in printed  # the pose MAE: the mean of the three angles' errors
    assert "`base_e40`" not in printed and "+0.0000 (+0.0 %)" in printed
