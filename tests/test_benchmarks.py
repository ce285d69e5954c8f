"""The benchmark scripts run end to end on a tiny configuration and their report renders the JSON
they write (no timing is asserted: figures belong in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json

from benchmarks import report, run


def test_run_writes_rows_for_every_mode_and_a_reference(tmp_path, capsys):
    out = tmp_path / "results.json"
    # The reference slot takes any factory: our own eager model stands in for the original here.
    rc = run.main(["--models", "t", "--batches", "1", "--modes", "eager", "fused", "--repeats", "1",
                   "--warmup", "0", "--block", "0", "--reference", "benchmarks.impls:ours", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["inference"]
    assert [(r["model"], r["mode"], r["batch"]) for r in rows] == [
        ("hrformer_t", "reference", 1), ("hrformer_t", "eager", 1), ("hrformer_t", "fused", 1)]
    assert all(r["ms"] > 0 and r["speedup_vs_reference"] > 0 for r in rows)
    assert rows[0]["speedup_vs_reference"] == 1.0

    capsys.readouterr()
    assert report.main([str(out)]) == 0
    md = capsys.readouterr().out
    assert "| hrformer_t | fused | fp32 | 256x192 | 1 |" in md
    assert md.count("\n| hrformer_t |") == 3
