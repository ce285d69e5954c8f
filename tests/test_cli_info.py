"""``hrformer info``: the Table 2 configurations and measured numbers next to the paper's."""

from __future__ import annotations

import subprocess
import sys

from hrformer.cli import main


def test_info_default_prints_table2_and_measured_vs_published(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "(18, 36, 72, 144)" in out and "(78, 156, 312, 624)" in out and "(2, 4, 8, 16)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("hrformer_")}
    # measured classifier params / GMACs, then the published numbers, in the second table
    b = [r for r in out.splitlines() if r.startswith("hrformer_b ")][-1].split()
    assert b[1:5] == ["50.320", "50.3", "13.308", "13.71"]
    assert b[7] == "11.999" and b[8] == "12.2"
    assert "hrformer_t" in rows and "hrformer_s" in rows


def test_info_named_model_at_input_size(capsys):
    assert main(["info", "hrformer_t", "--head", "pose", "--input-size", "64", "48"]) == 0
    out = capsys.readouterr().out
    assert "hrformer_t" in out and "64x48" in out and "pose" in out


def test_info_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "hrformer_x"]) == 2
    assert "Unknown model 'hrformer_x'" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "hrformer", "info", "hrformer_t", "--input-size", "32", "32"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "32x32" in result.stdout
