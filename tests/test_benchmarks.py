"""The benchmark scripts run end to end on a tiny configuration and their report renders the JSON
they write (no timing is asserted: figures belong in benchmarks/RESULTS.md). ``--no-retry``: a
block disturbed by other processes is kept, never waited out."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from benchmarks import bf16_error, compile_dynamic, finetune, profile_ops, python_after_kernel, report, run
from hrformer.fast.cpu import machine_info


def test_run_writes_rows_for_every_mode_and_a_reference(tmp_path, capsys):
    out = tmp_path / "results.json"
    # The reference slot takes any factory: our own eager model stands in for the original here.
    rc = run.main(["--models", "t", "--batches", "1", "2", "--modes", "eager", "fused", "--repeats", "1",
                   "--warmup", "0", "--block", "0", "--no-retry", "--reference", "benchmarks.impls:ours",
                   "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["inference"]
    assert [(r["model"], r["mode"], r["batch"]) for r in rows] == [
        ("hrformer_t", mode, batch) for batch in (1, 2) for mode in ("reference", "eager", "fused")]
    assert all(r["ms"] > 0 and r["speedup_vs_reference"] > 0 for r in rows)
    assert rows[0]["speedup_vs_reference"] == 1.0
    # Every mode's outputs against the fp32 eager model with the same weights (the original: its own).
    assert rows[0]["max_rel_error"] == "" and rows[1]["max_rel_error"] == 0.0
    assert 0.0 <= rows[2]["max_rel_error"] <= 1e-4
    # The machine is named in every file: model, cores, the ISA flags that decide the fastest path.
    data = json.loads(out.read_text())
    assert data["cpu_model"] and data["cpu_count"] >= 1
    assert {k: data[k] for k in ("avx2", "avx512", "avx512_bf16", "amx")} == {
        k: v for k, v in machine_info().items() if k in ("avx2", "avx512", "avx512_bf16", "amx")}
    assert data["machine_kind"] in ("amx", "avx512_bf16", "avx512", "avx2", "other")

    capsys.readouterr()
    assert report.main([str(out)]) == 0
    md = capsys.readouterr().out
    assert "| hrformer_t | fused | fp32 | 256x192 | 1 |" in md
    assert md.count("\n| hrformer_t |") == 6
    assert f"machine_kind {data['machine_kind']}" in md
    assert report.main(["--ratios", str(out)]) == 0
    assert "max error relative to the fp32 eager outputs: eager 0, fused " in capsys.readouterr().out


def test_run_isolated_times_each_mode_in_its_own_process_against_its_reference(tmp_path, monkeypatch):
    children = []

    def child(command, check):  # the fresh process, run here: same arguments, one mode each
        assert command[:3] == [sys.executable, "-m", "benchmarks.run"] and check
        children.append(command[3:])
        assert run.main(command[3:]) == 0

    monkeypatch.setattr(run.subprocess, "run", child)
    out = tmp_path / "isolated.json"
    rc = run.main(["--models", "t", "--batches", "1", "--modes", "eager", "fused", "--isolate", "--repeats", "1",
                   "--warmup", "0", "--block", "0", "--no-retry", "--reference", "benchmarks.impls:ours",
                   "--json", str(out)])
    assert rc == 0
    assert [c[c.index("--modes") + 1:c.index("--json")] for c in children] == [["eager"], ["fused"]]
    assert all("--isolate" not in c and c.count("--json") == 1 for c in children)
    rows = json.loads(out.read_text())["inference"]
    assert [r["mode"] for r in rows] == ["eager", "fused"]
    assert all(r["isolated"] and r["reference_ms"] > 0 for r in rows)
    assert all(r["speedup_vs_reference"] == pytest.approx(r["reference_ms"] / r["ms"], rel=0.02) for r in rows)
    assert not list(tmp_path.glob(".isolated_*"))  # the children's files are removed


@pytest.mark.slow  # exports HRFormer-T twice and runs it in bf16 (emulated on CPUs without it: slow)
def test_run_times_the_bf16_and_openvino_paths(tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "results.json"
    rc = run.main(["--models", "t", "--batches", "1", "--modes", "fused-bf16", "openvino", "openvino-bf16",
                   "--repeats", "1", "--warmup", "0", "--block", "0", "--no-retry", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["inference"]
    assert [r["mode"] for r in rows] == ["fused-bf16", "openvino", "openvino-bf16"]
    assert 0.0 < rows[0]["max_rel_error"] <= 3e-2 and rows[1]["max_rel_error"] <= 1e-4
    assert rows[2]["max_rel_error"] <= (3e-2 if rows[2]["runtime_precision"] == "bf16" else 1e-4)
    assert rows[1]["runtime_precision"] == "f32"
    assert rows[2]["runtime_precision"] in ("bf16", "f32")  # bf16 where the CPU plugin supports it


@pytest.mark.parametrize("name, cls", [
    ("mkldnn::_convolution_pointwise", "convolution"), ("aten::mkldnn_convolution", "convolution"),
    ("aten::_slow_conv2d_forward", "convolution"), ("aten::addmm", "matmul"), ("aten::bmm", "matmul"),
    ("mkldnn::_linear_pointwise", "matmul"), ("aten::_softmax", "attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"), ("aten::native_layer_norm", "normalisation"),
    ("aten::native_batch_norm", "normalisation"), ("aten::gelu", "activation"), ("aten::clamp_min", "activation"),
    ("aten::upsample_bilinear2d", "resampling"), ("aten::copy_", "copies"), ("aten::constant_pad_nd", "copies"),
    ("aten::add_", "element-wise"), ("aten::mul", "element-wise"), ("aten::empty", "other"), ("aten::view", "other"),
])
def test_profile_ops_classifies_the_ops_of_both_implementations(name, cls):
    assert profile_ops.op_class(name) == cls


@pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")
def test_bf16_error_compares_every_attention_product_and_autocast_with_fp32(tmp_path):
    out = tmp_path / "bf16.json"
    pinned = bf16_error.attention.attention_path
    assert bf16_error.main(["--models", "t", "--batches", "1", "--seeds", "0", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    columns = ["autocast", *(f"fused_{p}" for p in bf16_error.PRODUCTS)]
    # bf16 rounding shows (the cast happened), and stays near the documented ~3e-2 (2.0-3.3% measured).
    assert all(1e-3 < row[c] <= 4e-2 for c in columns), row
    assert bf16_error.attention.attention_path == pinned  # the product it pinned in turn is undone


@pytest.mark.parametrize("task, impls", [
    ("inference", ["--modes", "fused"]),
    pytest.param("train", ["--train"], marks=pytest.mark.slow),  # a training step of T with a profiler: ~15 s
])
def test_profile_ops_splits_wall_time_into_required_kernels_and_glue(tmp_path, task, impls):
    out = tmp_path / "profile.json"
    rc = profile_ops.main(["--models", "t", "--batches", "1", *impls, "--reference", "benchmarks.impls:ours",
                           "--repeats", "1", "--block", "0", "--calls", "1", "--no-retry", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["breakdown"]
    assert [(r["impl"], r["task"]) for r in rows] == [("reference", task), ("ours fused" if task == "inference" else "ours train", task)]
    for r in rows:
        parts = sum(r[f"{c}_ms"] for c in profile_ops.REQUIRED + profile_ops.GLUE)
        assert abs(parts - r["wall_ms"]) <= 0.01 * r["wall_ms"] + 0.5
        assert 0 < r["required_ms"] < r["wall_ms"] and r["convolution_ms"] > 0 and r["attention_ms"] > 0
        # The bound assumes free glue, so it is never below the measured speed-up.
        assert r["bound_vs_reference"] >= r["speedup_vs_reference"]


def test_profile_ops_runtime_rows_report_wall_time_only():
    """ONNX Runtime / OpenVINO rows: the profiler sees no kernel of theirs, at most the tensor
    conversions around them (the openvino-bf16 row ended in ZeroDivisionError on those)."""
    no_ops = dict.fromkeys(profile_ops.CLASSES, 0.0)
    conversions_only = {**no_ops, "copies": 0.3, "other": 0.1}
    for per_class in (no_ops, conversions_only):
        for ref_ms in (None, 0.0, 200.0):
            row = profile_ops.breakdown(50.0, per_class, ref_ms)
            assert row["wall_ms"] == 50.0
            assert row["speedup_vs_reference"] == (4.0 if ref_ms else "-")
            assert all(row[f"{c}_ms"] == "-" for c in profile_ops.REQUIRED + profile_ops.GLUE)
            assert row["required_ms"] == row["glue_share"] == row["bound_vs_reference"] == "-"
            assert row["python_min_ms"] == row["python_max_ms"] == "-"
    printed = run.table([{"impl": "ours openvino-bf16", **profile_ops.breakdown(50.0, conversions_only, 200.0)}],
                        ["impl", "wall_ms", "glue_share", "speedup_vs_reference", "bound_vs_reference"])
    assert printed.splitlines()[-1].split() == ["ours", "openvino-bf16", "50.0", "-", "4.0", "-"]


def test_profile_ops_ratios_without_a_reference_or_with_a_zero_denominator_are_dashes():
    assert profile_ops.ratio(200.0, 50.0) == 4.0
    assert profile_ops.ratio(None, 50.0) == profile_ops.ratio(200.0, 0.0) == profile_ops.ratio(200.0, None) == "-"
    per_class = {**dict.fromkeys(profile_ops.CLASSES, 0.0), "convolution": 30.0, "copies": 10.0}
    row = profile_ops.breakdown(50.0, per_class, None)
    assert (row["convolution_ms"], row["copies_ms"], row["python_ms"], row["required_ms"]) == (30.0, 10.0, 10.0, 30.0)
    assert row["glue_share"] == 0.4 and row["speedup_vs_reference"] == row["bound_vs_reference"] == "-"
    assert profile_ops.breakdown(50.0, per_class, 100.0)["bound_vs_reference"] == round(100.0 / 30.0, 2)
    # Profiled times above the wall time (the profiler's own overhead) are scaled down to it.
    slowed = profile_ops.breakdown(25.0, per_class, 100.0)
    assert slowed["required_ms"] == 18.8 and slowed["python_ms"] == 0.0


def test_profile_ops_python_time_is_the_gaps_between_ops_scaled_with_them():
    per_class = {**dict.fromkeys(profile_ops.CLASSES, 0.0), "convolution": 30.0, "copies": 10.0, "python": 10.0,
                 "python_min": 6.0, "python_max": 16.0}
    row = profile_ops.breakdown(25.0, per_class, 100.0)  # profiled 50 ms per call, 25 ms unprofiled
    assert (row["convolution_ms"], row["copies_ms"], row["python_ms"]) == (15.0, 5.0, 5.0)
    assert (row["python_min_ms"], row["python_max_ms"]) == (3.0, 8.0)  # the per-call spread, on the same scale
    assert row["glue_share"] == 0.4 and row["bound_vs_reference"] == round(100.0 / 15.0, 2)
    measured = profile_ops.profiled_classes(lambda: [torch.ones(64).add(1) for _ in range(20)], calls=3)
    assert measured["python"] > 0 and measured["element-wise"] > 0
    assert measured["python_min"] <= measured["python"] <= measured["python_max"]
    assert measured["top_level_ops"] == 40  # ones and add, 20 times per call


def test_ratio_table_has_one_line_per_model_and_batch():
    rows = [{"model": "hrformer_t", "mode": m, "dtype": "fp32", "size": "256x192", "batch": b, "ms": ms,
             "speedup_vs_reference": sp}
            for b in (1, 8) for m, ms, sp in (("reference", 200.0, 1.0), ("fused", 100.0, 2.0), ("openvino", 50.0, 4.0))]
    lines = report.ratio_table(rows).splitlines()
    assert lines[0] == "| model | dtype | size | batch | original ms | fused | openvino |"
    assert lines[2:] == ["| hrformer_t | fp32 | 256x192 | 1 | 200 | 2 | 4 |", "| hrformer_t | fp32 | 256x192 | 8 | 200 | 2 | 4 |"]


def test_finetune_steps_ours_and_a_reference_from_the_same_weights(tmp_path):
    """The fine-tuning benchmark (AdamW steps of the pose model) on a tiny CPU configuration; our
    backbone stands in for the original, so both sides start from the same weights and the same loss."""
    out = tmp_path / "finetune.json"
    rc = finetune.main(["--device", "cpu", "--model", "t", "--batch", "1", "--size", "64x48", "--variants", "fp32",
                        "bf16+cl", "--reference", "benchmarks.impls:ours", "--warmup", "1", "--steps", "1",
                        "--repeats", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert list(rows) == ["reference fp32", "reference bf16", "fp32", "bf16+cl"]
    assert all(r["ms"] > 0 and r["speedup_vs_reference_fp32"] > 0 for r in rows.values())
    assert data["agreement"]["fp32_first_loss_rel_diff"] <= 1e-5
    assert data["machine_kind"] and data["device"] == "cpu"


@pytest.mark.slow  # compiles a one-block HRFormer-T three times (about a minute on 2 cores)
def test_compile_dynamic_compiles_once_for_every_batch_size(tmp_path, monkeypatch):
    import torch
    import torch._dynamo
    import torch._inductor.config as inductor_config

    import hrformer

    monkeypatch.setattr(inductor_config, "freezing", inductor_config.freezing)  # restored at teardown
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", torch._dynamo.config.recompile_limit)
    monkeypatch.setattr(compile_dynamic, "ours", lambda name: hrformer.create_model(
        name, head=None, upsample_mode="nearest", modules=(1, 1, 1, 1), blocks=1))
    out = tmp_path / "compile.json"
    rc = compile_dynamic.main(["--models", "t", "--batches", "1", "2", "--new-batches", "3", "16", "--repeats", "1",
                               "--warmup", "0", "--block", "0", "--no-retry", "--reference", "benchmarks.impls:ours",
                               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    summary = {r["variant"]: r for r in data["summary"]}
    # The dynamic batch: compiled at batch 1, reused at 2, 3 and 16 (none refused by fail_on_recompile).
    assert summary["dynamic"]["graphs"] == 1 and summary["dynamic"]["recompilations"] == 0
    assert summary["dynamic"]["new_batch_sizes"] == [2, 3, 16]
    assert not any(r["refused_recompile"] for r in data["compile"])
    assert summary["static"]["graphs"] == 2 and summary["static"]["recompilations"] == 1
    # Freezing with a dynamic batch computes what the fused eager model does.
    errors = [r["max_rel_error"] for r in data["compile"] + data["inference"] if r["max_rel_error"] != ""]
    assert len(errors) == 2 + 4 + 2 * 3 and max(errors) <= 1e-5
    assert [(r["mode"], r["batch"]) for r in data["inference"]] == [
        (mode, b) for b in (1, 2) for mode in ("reference", "fused", "fused+static-compile", "fused+dynamic-compile")]
    assert data["machine_kind"] and data["inductor_freezing"] is True

    # The check itself: a call that has to recompile is refused, counted, then allowed.
    static = torch.compile(torch.nn.Linear(4, 4), dynamic=False)

    def expected(batch):
        with torch.no_grad():
            return [torch.nn.functional.linear(torch.ones(batch, 4), static.weight, static.bias)]

    assert compile_dynamic.first_call(static, torch.ones(2, 4), expected(2), False)["graphs_compiled"] == 1
    same = compile_dynamic.first_call(static, torch.ones(2, 4), expected(2), True)
    assert same["refused_recompile"] is False and same["graphs_compiled"] == 0
    new = compile_dynamic.first_call(static, torch.ones(3, 4), expected(3), True)
    assert new["refused_recompile"] is True and new["graphs_compiled"] == 1 and new["max_rel_error"] <= 1e-6


def test_freed_memory_compares_medians_of_alternated_processes_per_allocator(tmp_path, monkeypatch):
    from benchmarks import freed_memory

    one = freed_memory.measure("hrformer_t", 1, "fused", keep=False, warmup=0, calls=1, threads=1)
    assert one["ms"] > 0 and one["page_faults"] >= 0 and one["system_ms"] >= 0
    library = tmp_path / "liballoc.so"  # only its path is used here: the processes are faked
    library.write_bytes(b"")
    times = {"default": iter([30.0, 34.0, 31.0]), "kept": iter([29.0, 35.0, 27.0]), "alloc": iter([20.0, 21.0, 40.0])}
    order = []

    def fake(args, arch, batch, mode, setting):
        order.append((setting.name, setting.keep, setting.preload))
        if mode == "openvino-bf16" and setting.preload:
            raise freed_memory.Aborted("alloc: exit status -6: double free")
        return {"ms": next(times[setting.name]), "page_faults": 0.0 if setting.keep else 900.0, "system_ms": 1.0}

    monkeypatch.setattr(freed_memory, "_in_fresh_process", fake)
    out = tmp_path / "fm.json"
    assert freed_memory.main(["--models", "t", "--batches", "1", "--pairs", "3", "--preload", f"alloc={library}",
                              "--json", str(out)]) == 0
    assert order == [("default", False, None), ("kept", True, None), ("alloc", False, str(library))] * 3  # alternated
    row = json.loads(out.read_text())["rows"][0]
    assert (row["default_ms"], row["kept_ms"], row["kept_faster_pairs"]) == (31.0, 29.0, 2)
    assert row["kept_over_default"] == round(29.0 / 31.0, 3) and row["default_faults"] == 900
    assert (row["alloc_ms"], row["alloc_over_default"], row["alloc_faster_pairs"]) == (21.0, round(21.0 / 31.0, 3), 2)
    assert [r["ms"] for r in row["runs"]["kept"]] == [29.0, 35.0, 27.0]
    # A setting whose process fails is reported, not retried; the others are still timed.
    # Modes alternate within each round too.
    order.clear()
    times.update(default=iter([30.0] * 6), alloc=iter([20.0] * 3))
    assert freed_memory.main(["--models", "t", "--batches", "1", "--modes", "fused", "openvino-bf16", "--pairs", "3",
                              "--without-kept", "--preload", f"alloc={library}", "--json", str(out)]) == 0
    assert [name for name, _, _ in order] == ["default", "alloc", "default", "alloc"] + ["default", "alloc", "default"] * 2
    fused, openvino = json.loads(out.read_text())["rows"]
    assert (fused["mode"], fused["alloc_ms"], openvino["mode"]) == ("fused", 20.0, "openvino-bf16")
    assert (openvino["default_ms"], openvino["alloc_ms"]) == (30.0, "aborted")
    assert "double free" in openvino["alloc_error"] and "kept_ms" not in openvino
    with pytest.raises(SystemExit, match="NAME=PATH"):
        freed_memory.main(["--preload", str(library)])
    with pytest.raises(SystemExit, match="another setting is named 'kept'"):
        freed_memory.main(["--preload", f"kept={library}"])
    with pytest.raises(SystemExit, match="does not exist"):
        freed_memory.main(["--preload", f"alloc={tmp_path / 'missing.so'}"])


def test_benchmark_records_name_the_allocator(tmp_path):
    from hrformer.fast.memory import allocator

    run.write_json(str(tmp_path / "r.json"), {"rows": []})
    assert json.loads((tmp_path / "r.json").read_text())["allocator"] == allocator()


def test_a_preloaded_allocator_reaches_the_fresh_process(tmp_path, monkeypatch):
    """The setting's library goes in front of any LD_PRELOAD the benchmark itself runs with."""
    from benchmarks import freed_memory

    seen = {}

    def fake_run(cmd, check, capture_output, text, env):
        seen.update(cmd=cmd, preload=env.get("LD_PRELOAD"))
        return type("Done", (), {"returncode": 0, "stderr": "", "stdout": '{"ms": 1.0, "page_faults": 0.0, "system_ms": 0.0}\n'})()

    monkeypatch.setattr(freed_memory.subprocess, "run", fake_run)
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    args = freed_memory.argparse.Namespace(warmup=0, calls=1, threads=1)
    setting = freed_memory.Setting("alloc", preload="/lib/alloc.so")
    assert freed_memory._in_fresh_process(args, "hrformer_t", 1, "fused", setting)["ms"] == 1.0
    assert seen["preload"] == "/lib/alloc.so /other.so" and seen["cmd"][3:8] == ["--one", "hrformer_t", "1", "fused", "0"]


def test_fast_path_ab_times_the_fused_model_against_an_older_package(tmp_path, monkeypatch):
    """``--fused-only``: this checkout's fused model and the old package's (here: a renamed copy of
    this one), each checked against the eager outputs first, timed in one process."""
    import shutil
    import sys
    from pathlib import Path

    import hrformer
    from benchmarks import fast_path_ab

    shutil.copytree(Path(hrformer.__file__).parent, tmp_path / "hrformer_old",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts --old in front
    out = tmp_path / "ab.json"
    try:
        fast_path_ab.main(["--old", str(tmp_path), "--fused-only", "--models", "t", "--batches", "1", "--heads",
                           "none", "--size", "64x48", "--repeats", "1", "--max-tries", "1", "--between-ops", "1",
                           "--out", str(out)])
    finally:
        for name in [m for m in sys.modules if m == "hrformer_old" or m.startswith("hrformer_old.")]:
            del sys.modules[name]
    data = json.loads(out.read_text())
    (row,) = data["records"]
    assert set(row["ms"]) == {"fused", "old_fused"} and all(v > 0 for v in row["ms"].values())
    between = row["between_ops"]
    assert set(between) == {"fused", "old_fused"} and all(b["ms"] > 0 and b["ops"] > 100 for b in between.values())
    assert data["dtype"] == row["dtype"] == "fp32" and data["allocator"] and data["cpu_model"]


def test_python_after_kernel_times_one_lookup_after_each_neighbour(tmp_path):
    out = tmp_path / "after.json"
    threads = torch.get_num_threads()
    assert python_after_kernel.main(["--models", "t", "--threads", "1", "--rounds", "2", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "hrformer_t" and row["threads"] == 1 and len(row["tokens"]) == 4
    assert all(row[f"{case}_us"] > 0 for case in python_after_kernel.CASES)
    assert all(row[f"{case}_vs_warm"] > 0 for case in python_after_kernel.CASES[1:])
    assert torch.get_num_threads() == threads  # the process is left as it was
