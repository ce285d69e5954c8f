"""The inference fast path: ``fuse_for_inference`` swaps in fused modules that give the reference
model's outputs, NaN and Inf included, with the private kernels on or off, and guards itself."""

from __future__ import annotations

import collections
import copy
import importlib
import sys
import warnings

import pytest
import torch

import hrformer
from hrformer.fast import FusedState, attention, kernels
from hrformer.fast.attention import FusedWindowAttention
from hrformer.fast.block import FusedConvFFN
from hrformer.fast.modules import FusedConvNormAct
from hrformer.layers import ConvNormAct, LocalWindowAttention
from parity import QUICK_HEADS, SMALL, X, outputs


@pytest.fixture(params=[True, False], ids=["kernels", "public-ops"])
def fast_path(request):
    previous = kernels._enabled
    kernels.set_fast_path(request.param)
    yield request.param
    kernels.set_fast_path(previous)


@pytest.mark.parametrize("name, head", [("hrformer_t", h) for h in QUICK_HEADS] + [("hrformer_t_hrnet", "classification")])
def test_fused_equals_reference(name, head, fast_path, head_kwargs, randomise_bn):
    torch.manual_seed(0)
    model = randomise_bn(hrformer.create_model(name, head=head, **head_kwargs(head, 10)).eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    x = torch.randn(1, 3, 61, 45)
    for ref, out in zip(outputs(model, x), outputs(fused, x)):
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", ["explicit", "explicit-mixed", "flash", "auto"])
def test_fused_attention_takes_the_path_measured_faster_with_the_same_outputs(path, dtype, monkeypatch, randomise_bn):
    """The explicit products or the flash kernel, pinned or timed once per window shape ("auto"):
    each gives the reference outputs (bf16: within its rounding), whichever CPU runs the test. Each
    block chooses on its first call at an input size and keeps the choice."""
    if dtype is not None and dtype not in kernels.kernel_dtypes():
        pytest.skip("oneDNN runs no bf16 on this CPU: bf16 models keep the reference path")
    monkeypatch.setattr(attention, "attention_path", path)
    monkeypatch.setattr(attention, "_fastest", {})
    torch.manual_seed(0)
    model = randomise_bn(hrformer.create_model("hrformer_t", head="pose").eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 without native support warns
        fused = copy.deepcopy(model).fuse_for_inference(dtype=dtype)
    attentions = sum(isinstance(m, FusedWindowAttention) for m in fused.modules())
    x = torch.randn(1, 3, 61, 45)
    ref = outputs(model, x)
    chosen = []
    choose = attention.attention_product
    monkeypatch.setattr(attention, "attention_product", lambda *a: chosen.append(choose(*a)) or chosen[-1])
    first = outputs(fused, x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = outputs(fused, x)
    ran = collections.Counter(e.name for e in prof.events())
    flash, softmax = ran["aten::scaled_dot_product_attention"], ran["aten::softmax"]
    if not kernels.fast_path_enabled():
        assert not chosen and flash == attentions and softmax == 0
    else:
        assert len(chosen) == attentions  # on the first call only
        assert flash == chosen.count("flash") and softmax == attentions - flash
        if path == "auto":  # one timing per kind of windows (one per branch here), reused by every block
            assert len(attention._fastest) == 4
            assert set(chosen) <= ({"flash", "explicit"} | ({"explicit-mixed"} if dtype else set()))
        else:
            assert set(chosen) == {path}
    tol = 3e-2 if dtype else 1e-5
    assert torch.equal(out[0], first[0])
    assert (out[0] - ref[0]).abs().max() <= tol * ref[0].abs().max()


def test_attention_choice_is_timed_once_per_kind_of_windows(monkeypatch):
    """Window counts within a factor of 2 share one timing: images of many sizes cost a few timings
    per branch, not one per size."""
    monkeypatch.setattr(attention, "attention_path", "auto")
    monkeypatch.setattr(attention, "_fastest", {})
    timed = []
    monkeypatch.setattr(kernels, "fastest_of", lambda candidates: timed.append(sorted(candidates)) or "explicit")
    mask = torch.zeros(1, 2, 49, 49)
    for windows in (6, 5, 7, 6, 12, 9):
        q = torch.randn(windows, 2, 49, 18)
        assert attention.attention_product(q, q, q, mask) == "explicit"
    assert timed == [["explicit", "flash"]] * 2  # 4-7 windows, then 8-15
    q = torch.randn(6, 2, 49, 18, dtype=torch.bfloat16)
    attention.attention_product(q, q, q, mask.bfloat16())
    assert timed[-1] == ["explicit", "explicit-mixed", "flash"] and len(attention._fastest) == 3
    big = torch.randn(4096, 2, 49, 18)  # explicit scores over the limit: flash, untimed
    assert attention.attention_product(big, big, big, mask) == "flash" and len(timed) == 3


@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", ["onednn", "other", "auto"])
def test_onednn_matmuls_replace_projections_and_ffn_units_with_the_same_outputs(path, dtype, monkeypatch, randomise_bn):
    """The attention's projections and the FFN's 1x1 units on the block's tokens run as oneDNN
    matmuls (the GELU as post-op), as the ops they replace (ATen's linear, the convolutions), or as
    whichever measured faster for each kind of tokens, timed once ("auto"): the reference outputs
    every way (bf16: within its rounding)."""
    if dtype is not None and dtype not in kernels.kernel_dtypes():
        pytest.skip("oneDNN runs no bf16 on this CPU: bf16 models keep the reference path")
    monkeypatch.setattr(kernels, "matmul_path", path)
    monkeypatch.setattr(kernels, "_onednn_faster", {})
    matmuls = []  # (out, in) of each oneDNN matmul
    onednn_matmul = kernels.onednn_matmul
    monkeypatch.setattr(kernels, "onednn_matmul", lambda x, w, *a: matmuls.append(tuple(w.shape)) or onednn_matmul(x, w, *a))
    torch.manual_seed(0)
    model = randomise_bn(hrformer.HRFormer(SMALL, head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference(dtype=dtype)
    units = {"conv": [(u.conv.in_channels, u.conv.out_channels) for m in fused.modules() if isinstance(m, FusedConvFFN)
                      for u in (m.fc1, m.fc2)],
             "linear": [(lin.in_features, lin.out_features) for m in fused.modules()
                        if isinstance(m, FusedWindowAttention) for lin in (m.qkv, m.proj)]}
    x = X[:, :, :40, :36]
    ref = outputs(model, x)[0]
    outputs(fused, x)  # "auto" times here
    matmuls.clear()
    out = outputs(fused, x)[0]
    # (out, in): qkv 3C x C, proj C x C, fc1 4C x C, fc2 C x 4C: no two alike
    used = {"conv": sum(o in (4 * i, i // 4) for o, i in matmuls), "linear": sum(o in (3 * i, i) for o, i in matmuls)}
    if not kernels.fast_path_enabled():
        assert used == {"conv": 0, "linear": 0}
    elif path == "auto":  # one timing per kind of tokens (each branch has its own channels), kept
        faster = {(key[0], *key[2:4]): onednn for key, onednn in kernels._onednn_faster.items()}
        assert len(faster) == len(kernels._onednn_faster) == sum(len(set(u)) for u in units.values())
        assert used == {kind: sum(faster[(kind, *u)] for u in shapes) for kind, shapes in units.items()}
    else:
        assert used == {kind: len(shapes) if path == "onednn" else 0 for kind, shapes in units.items()}
    tol = 3e-2 if dtype else 1e-5
    assert (out - ref).abs().max() <= tol * ref.abs().max()


@pytest.mark.usefixtures("one_thread")
def test_ffn_matmuls_follow_their_convolution_weights(monkeypatch, randomise_bn):
    """The FFN's matmuls read the 1x1 convolutions' weights through a kept (out, in) view: edited in
    place, loaded (copied or assigned) or cast, the weights reach the outputs as through the
    convolutions."""
    if not kernels.fast_path_enabled():
        pytest.skip("the oneDNN kernels do not run here")
    torch.manual_seed(0)
    model = randomise_bn(hrformer.HRFormer(SMALL, head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    x = X[:, :, :40, :36]

    def check(what):
        monkeypatch.setattr(kernels, "matmul_path", "other")
        expected = outputs(fused, x)[0]
        monkeypatch.setattr(kernels, "matmul_path", "onednn")
        out = outputs(fused, x)[0]
        assert (out - expected).abs().max() <= 1e-5 * expected.abs().max(), what
        return out

    before = check("as fused")
    weights = {k: v for k, v in fused.state_dict().items() if ".ffn.fc" in k and k.endswith("conv.weight")}
    assert weights
    with torch.no_grad():
        for name, w in weights.items():
            w.mul_(1.5)
    after = check("in-place edit")
    assert (after - before).abs().max() > 1e-3 * before.abs().max()
    fused.load_state_dict({k: torch.randn_like(v) * 0.1 for k, v in weights.items()}, strict=False)
    check("load_state_dict")
    fused.load_state_dict({k: torch.randn_like(v) * 0.1 for k, v in weights.items()}, strict=False, assign=True)
    check("load_state_dict(assign=True)")
    if torch.bfloat16 in kernels.kernel_dtypes():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bf16 without native support warns
            fused.fuse_for_inference(dtype=torch.bfloat16)
        monkeypatch.setattr(kernels, "matmul_path", "other")
        expected = outputs(fused, x)[0]
        monkeypatch.setattr(kernels, "matmul_path", "onednn")
        out = outputs(fused, x)[0]
        assert (out - expected).abs().max() <= 2e-2 * expected.abs().max(), "cast to bf16"


def test_matmul_path_environment_variable_is_checked(monkeypatch):
    monkeypatch.setenv(kernels.MATMUL_ENV_VAR, " oneDNN")
    assert kernels.matmul_path_from_environment() == "onednn"
    monkeypatch.setenv(kernels.MATMUL_ENV_VAR, "mkl")
    with pytest.raises(hrformer.InputError, match="HRFORMER_MATMUL"):
        kernels.matmul_path_from_environment()


def test_attention_path_environment_variable_is_checked(monkeypatch):
    monkeypatch.setenv(attention.ATTENTION_ENV_VAR, " Flash")
    assert attention.attention_path_from_environment() == "flash"
    monkeypatch.setenv(attention.ATTENTION_ENV_VAR, "fastest")
    with pytest.raises(hrformer.errors.InputError, match="HRFORMER_ATTENTION"):
        attention.attention_path_from_environment()


def test_reference_layers_stay_plain_and_fusing_replaces_them():
    model = hrformer.create_model("hrformer_t", head="pose").eval()
    assert not any(type(m).__name__.startswith("Fused") for m in model.modules()) and not model.is_fused
    assert model.fuse_for_inference() is model
    # The model keeps its class (no class made at run time); its layers are new module instances.
    assert type(model) is hrformer.HRFormer and model.is_fused and model.fused == FusedState()
    assert any(isinstance(m, FusedConvNormAct) for m in model.modules())
    assert all(isinstance(m, FusedWindowAttention) for m in model.modules() if isinstance(m, LocalWindowAttention))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(type(m) is not ConvNormAct for m in model.modules())
    # Every module's class is the one importable under its name: nothing made at run time.
    assert all(getattr(sys.modules[type(m).__module__], type(m).__qualname__) is type(m) for m in model.modules())


@pytest.mark.parametrize("head, bad", [("pose", float("nan")), ("pose", float("inf")),
                                       ("classification", float("nan")), (None, float("inf"))])
def test_non_finite_input_reaches_the_output_in_every_mode(head, bad, head_kwargs):
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head=head, **head_kwargs(head, 10)).eval()
    fused = copy.deepcopy(model).fuse_for_inference()
    x = torch.randn(1, 3, 64, 48)
    x[0, :, 10, 10] = bad
    def as_list(out):
        return out if isinstance(out, list) else [out]

    with torch.inference_mode():
        inference = {"inference_mode": as_list(model(x)), "fused inference_mode": as_list(fused(x))}
    results = {"eval": as_list(model(x)), "no_grad": outputs(model, x), "fused": outputs(fused, x), **inference}
    for mode, outs in results.items():
        assert all(not torch.isfinite(o).all() for o in outs), f"{mode}: a non-finite input gave finite outputs"
    # All-NaN image: every output value is NaN, fused or not.
    nan = torch.full_like(x, float("nan"))
    for m in (model, fused):
        assert all(torch.isnan(o).all() for o in outputs(m, nan))


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("1", True)])
def test_fast_path_switch_environment_variable(monkeypatch, value, enabled):
    monkeypatch.setenv("HRFORMER_FAST_PATH", value)
    try:
        importlib.reload(kernels)  # the variable is read once, at import
        assert kernels.fast_path_enabled() == (enabled and kernels._AVAILABLE)
    finally:
        monkeypatch.undo()
        importlib.reload(kernels)


def test_a_broken_private_kernel_disables_itself_with_one_warning(monkeypatch, randomise_bn):
    """A private operator whose signature changed (here: it raises) must not break inference."""
    torch.manual_seed(0)
    model = randomise_bn(hrformer.create_model("hrformer_t", head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    x = torch.randn(1, 3, 64, 48)

    def broken(*args, **kwargs):
        raise RuntimeError("mkldnn::_convolution_pointwise() expected 11 arguments")

    monkeypatch.setattr(kernels, "_onednn_conv_act", broken)
    monkeypatch.setattr(kernels, "_verified", {})
    monkeypatch.setattr(kernels, "_enabled", True)  # about the kernels, whatever HRFORMER_FAST_PATH says
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = outputs(fused, x)
        outputs(fused, x)
    messages = [str(w.message) for w in caught if "self-check" in str(w.message)]
    assert len(messages) == (1 if kernels.fast_path_enabled() else 0)  # 0: no oneDNN in this torch
    assert all("conv_act" in m for m in messages)
    ref = outputs(model, x)
    assert (out[0] - ref[0]).abs().max() <= 1e-5 * ref[0].abs().max()


@pytest.mark.parametrize("kind", ["conv_act", "conv_add_relu", "linear", "packed"])
def test_every_kernel_passes_its_self_check_in_every_dtype_it_takes(kind, monkeypatch):
    """fp32 always; bf16 where oneDNN runs it (AVX-512 and newer). A failure would only warn and
    fall back at run time, so it is asserted here."""
    monkeypatch.setattr(kernels, "_verified", {})
    for dtype in kernels.kernel_dtypes():
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            assert kernels._self_check(kind, dtype) == kernels._AVAILABLE


def test_finiteness_check_is_conservative():
    """Any NaN or Inf (even +Inf with -Inf) is caught; a finite input whose sum overflows only takes
    the public ops."""
    x = torch.randn(2, 3, 8, 8)
    assert kernels._finite(x)
    for bad in ([float("nan")], [float("inf")], [float("-inf")], [float("inf"), float("-inf")]):
        y = x.clone()
        y.view(-1)[: len(bad)] = torch.tensor(bad)
        assert not kernels._finite(y)
    assert not kernels._finite(torch.full((4,), 3e38))  # overflowing sum: public ops, same outputs


def test_kernels_only_for_plain_finite_inference():
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad(), kernels.kernels_for(x):
        assert kernels.active(x) == kernels.fast_path_enabled()
        assert not kernels.active(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not kernels.active(x)
    with torch.no_grad(), kernels.kernels_for(torch.full_like(x, float("nan"))):
        assert not kernels.active(x)
    with kernels.kernels_for(x):
        assert not kernels.active(x)  # gradients enabled: training or autograd wants the public ops
    assert not kernels.active(x)


def test_fused_model_refuses_training_and_saving(tmp_path):
    model = hrformer.create_model("hrformer_t", head="pose").fuse_for_inference()
    with pytest.raises(RuntimeError, match="fused for inference"):
        model.train()
    model.eval()  # still allowed
    with pytest.raises(ValueError, match="fused for inference"):
        hrformer.save_pretrained(model, tmp_path / "m")


def _tables(model):
    return [m.relative_position_bias_table for m in model.modules() if isinstance(m, LocalWindowAttention)]


@pytest.mark.usefixtures("one_thread")  # tiny network: OpenMP hand-offs cost more than they give
def test_fused_model_computes_with_its_current_bias_tables(randomise_bn):
    """The gathered relative position bias is a cache that follows the tables: edited in place,
    loaded with load_state_dict (copied or assigned), the fused model gives the unfused model's
    outputs with the same edit, never the bias gathered at fuse time."""
    torch.manual_seed(0)
    model = randomise_bn(hrformer.HRFormer(SMALL, head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    x = X[:, :, :32, :32]
    before = outputs(fused, x)[0]  # the bias is gathered and cached here

    def check(what):
        expected, out = outputs(model, x)[0], outputs(fused, x)[0]
        assert (expected - before).abs().max() > 1e-3 * expected.abs().max(), what  # the edit matters
        assert (out - expected).abs().max() <= 1e-5 * expected.abs().max(), what

    with torch.no_grad():
        for table in _tables(model) + _tables(fused):
            table.mul_(2)
    check("in-place edit")
    new_tables = {k: torch.randn_like(v) for k, v in model.state_dict().items() if k.endswith("bias_table")}
    model.load_state_dict(new_tables, strict=False)
    fused.load_state_dict(new_tables, strict=False)
    check("load_state_dict")
    new_tables = {k: v * 3 for k, v in new_tables.items()}
    model.load_state_dict(new_tables, strict=False)
    fused.load_state_dict(new_tables, strict=False, assign=True)  # new table tensors
    check("load_state_dict(assign=True)")



@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("made_in", ["inference_mode", "no_grad"])
def test_model_made_fused_and_loaded_under_inference_mode_follows_its_tables(made_in, dtype):
    """Built (or only fused) inside ``torch.inference_mode``, where tensors carry no version counter,
    the fused model runs, and tables loaded there afterwards (copied in place or assigned) reach its
    outputs as they reach the unfused model's."""
    torch.manual_seed(0)
    x = X[:, :, :32, :32]
    with torch.inference_mode() if made_in == "inference_mode" else torch.no_grad():
        model = hrformer.HRFormer(SMALL, head="pose").eval()
    with torch.inference_mode():
        fused = copy.deepcopy(model).fuse_for_inference(dtype=dtype)
        before = fused(x)
        tol = 3e-2 if dtype else 1e-5
        for assign in (False, True):
            tables = {k: torch.randn_like(v) for k, v in model.state_dict().items() if k.endswith("bias_table")}
            model.load_state_dict(tables, strict=False)
            fused.load_state_dict(tables, strict=False, assign=assign)
            expected, out = model(x), fused(x)
            assert (out - before).abs().max() > 0.1 * expected.abs().max(), assign  # the edit reached it
            assert (out - expected).abs().max() <= tol * expected.abs().max(), assign
            before = out


_MALLINFO_PROBE = """
import ctypes, torch, hrformer
from hrformer.fast import memory
libc = memory._glibc()
if libc is None or not hasattr(libc, "mallinfo2"):
    raise SystemExit(3)
class MallInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo
def allocation(nbytes=40 << 20):
    # (bytes mapped on their own, heap size) before, while a tensor is alive, and after it is freed
    info = [libc.mallinfo2()]
    t = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    info.append(libc.mallinfo2())
    del t
    info.append(libc.mallinfo2())
    return [v for i in info for v in (i.hblkhd, i.arena)]
before = allocation()
assert hrformer.keep_freed_memory() and hrformer.keep_freed_memory()  # applied, and again
print(*before, *allocation())
"""


def test_keep_freed_memory_keeps_large_activations_in_the_heap():
    """By default glibc maps a 40 MB tensor on its own and unmaps it when freed (the next forward
    faults its pages in again); after keep_freed_memory() it comes from the heap, which keeps it."""
    import subprocess

    run = subprocess.run([sys.executable, "-c", _MALLINFO_PROBE], capture_output=True, text=True)
    if run.returncode == 3:
        pytest.skip("not glibc >= 2.33 (no mallopt / mallinfo2)")
    assert run.returncode == 0, run.stderr
    values = list(map(int, run.stdout.split()))
    (mapped0, _, mapped1, _, mapped2, _), (kept0, heap0, kept1, heap1, kept2, heap2) = values[:6], values[6:]
    assert mapped1 - mapped0 >= 40 << 20 and mapped2 == mapped0  # mapped, then unmapped
    assert kept1 == kept0 == kept2  # not mapped on its own
    assert heap1 == heap2  # freed into the heap, which is not trimmed


def test_allocator_is_read_from_the_process_mappings(tmp_path):
    """Which malloc runs (a preloaded tcmalloc / jemalloc / mimalloc, else the C library's), for the
    records of benchmarks and evaluations."""
    from hrformer.fast.memory import ALLOCATORS, allocator

    line = "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/{}\n"
    maps = tmp_path / "maps"
    maps.write_text(line.format("libtcmalloc_minimal.so.4.5.10") + line.format("libc.so.6") + "7f20-7f30 rw-p [heap]\n")
    assert allocator(str(maps)) == "tcmalloc"
    maps.write_text(line.format("libjemalloc.so.2") + line.format("libc.so.6"))
    assert allocator(str(maps)) == "jemalloc"
    maps.write_text(line.format("libc.so.6"))
    assert allocator(str(maps)) == "libc"
    assert allocator(str(tmp_path / "absent")) == "unknown"
    assert allocator() in ("libc", "unknown", *ALLOCATORS)  # this process


def _packed_count(model):
    return sum(len(m.__dict__.get("_packed", {})) for m in model.modules())


@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_fused_model_computes_with_its_current_weights_when_they_are_kept_reordered(dtype, monkeypatch, randomise_bn):
    """The weights kept in oneDNN's layout are a cache: the fused model gives the outputs of its
    plain weights (the same model with nothing kept) after in-place edits, load_state_dict (copied or
    assigned), a ``.data`` swap and at another input size, and forgets them when pickled."""
    if dtype is not None and dtype not in kernels.kernel_dtypes():
        pytest.skip("oneDNN runs no bf16 on this CPU: bf16 models keep the reference path")
    torch.manual_seed(0)
    fused = copy.deepcopy(randomise_bn(hrformer.HRFormer(SMALL, head="pose").eval())).fuse_for_inference(dtype=dtype)
    sizes = [X[:, :, :40, :36], X[:, :, :32, :32]]
    tol = 2e-2 if dtype else 1e-6
    monkeypatch.setattr(kernels, "pack_weights", True)
    before = outputs(fused, sizes[0])[0]
    assert _packed_count(fused) > 0 or not (kernels.fast_path_enabled() and kernels._REORDER_CONV is not None)

    def check(what):
        for x in sizes:
            monkeypatch.setattr(kernels, "pack_weights", False)
            expected = outputs(fused, x)[0]
            monkeypatch.setattr(kernels, "pack_weights", True)
            out = outputs(fused, x)[0]
            assert (out - expected).abs().max() <= tol * expected.abs().max(), what
        return out

    weights = {k: v for k, v in fused.state_dict().items() if k.endswith("weight") and v.dim() in (2, 4)}
    with torch.no_grad():
        for w in weights.values():
            w.mul_(1.25)
    assert (check("in-place edit") - outputs(fused, sizes[1])[0]).abs().max() == 0  # packed twice, both kept
    monkeypatch.setattr(kernels, "pack_weights", True)
    assert (outputs(fused, sizes[0])[0] - before).abs().max() > 1e-2 * before.abs().max()  # the edit matters
    fused.load_state_dict({k: v * 0.8 for k, v in weights.items()}, strict=False)
    check("load_state_dict")
    fused.load_state_dict({k: v * 0.9 for k, v in weights.items()}, strict=False, assign=True)
    check("load_state_dict(assign=True)")
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.data = m.weight.data * 1.1  # new storage, no version bump
    check(".data swap")
    assert _packed_count(copy.deepcopy(fused)) == 0


def test_self_checks_leave_the_global_random_state_alone(monkeypatch):
    monkeypatch.setattr(kernels, "_verified", {})
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for kind in ("conv_act", "conv_add_relu", "linear", "packed"):
        kernels._self_check(kind)
    assert torch.equal(torch.rand(3), expected)
