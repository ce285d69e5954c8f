"""Op replays of the fused backbone (:mod:`hrformer.fast.replay`): once the calls of a forward have
settled for a kind of input, the same ops run again without the Python between them, with the same
outputs bit for bit, and the forward runs as written again whenever the model changed."""

from __future__ import annotations

import copy
import pickle
import threading
import warnings

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import hrformer
from hrformer.fast import kernels, replay
from hrformer.fast.replay import OpReplays
from parity import QUICK_HEADS, SMALL

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [None] + ([torch.bfloat16] if torch.bfloat16 in kernels.kernel_dtypes() else [])
SETTLE = 4  # calls after which a program runs: the first call times kernels, two more agree


def _programs(model):
    return [e for e in model.fused.replays._entries.values() if type(e) is replay._Program]


def _fused(head="pose", dtype=None, randomise_bn=None, **kwargs):
    torch.manual_seed(0)
    model = hrformer.HRFormer(SMALL, head=head, **kwargs).eval()
    if randomise_bn is not None:
        randomise_bn(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 without native support warns
        return model.fuse_for_inference(dtype=dtype)


def _as_written(model, x):
    previous, replay.enabled = replay.enabled, False
    try:
        with torch.no_grad():
            return model(x)
    finally:
        replay.enabled = previous


def _settled(model, x, calls=SETTLE):
    with torch.no_grad():
        for _ in range(calls):
            out = model(x)
    return out


def _same(a, b):
    a, b = (t if isinstance(t, (list, tuple)) else [t] for t in (a, b))
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: "bf16" if d else "fp32")
@pytest.mark.parametrize("head", QUICK_HEADS)
def test_replayed_forward_gives_the_outputs_of_the_forward_as_written(head, dtype, head_kwargs, randomise_bn):
    model = _fused(head, dtype, randomise_bn, **head_kwargs(head, 5))
    for x in (torch.randn(1, 3, 61, 45), torch.randn(2, 3, 64, 48)):
        out = _settled(model, x)
        assert _same(out, _as_written(model, x))
    assert len(_programs(model)) == 2  # one per kind of input


def test_features_only_and_forward_features_replay_too():
    model = _fused(None)
    x = torch.randn(1, 3, 61, 45)
    with torch.no_grad():
        for _ in range(SETTLE):
            feats = model.forward_features(x)
    assert _programs(model) and _same(feats, _as_written(model, x))


class _Scale(nn.Module):
    def forward(self, x):
        return x * 1.5


@pytest.mark.parametrize(
    "edit", ["in_place", "load_state_dict", "assign", "data_swap", "new_module", "appended", "to_dtype"])
def test_replay_follows_every_change_of_the_model(edit, randomise_bn):
    model = _fused("pose", randomise_bn=randomise_bn)
    x = torch.randn(1, 3, 61, 45)
    before = _settled(model, x)
    assert _programs(model)
    block = model.stage3.hr_modules[0].branches[1][0]
    # the stem's convolution runs on a weight kept reordered for oneDNN: a replay holds that copy
    edited = ("stem.conv1.conv.weight", "attn.qkv.weight")
    weights = [model.stem.conv1.conv.weight, block.attn.qkv.weight]
    with torch.no_grad():
        if edit == "in_place":
            for w in weights:
                w.mul_(1.5)
        elif edit in ("load_state_dict", "assign"):
            state = {k: v * 1.5 if k.endswith(edited) else v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(state, assign=edit == "assign")
        elif edit == "data_swap":
            for w in weights:
                w.data = w.data * 1.5
        elif edit == "new_module":
            block.norm2 = nn.LayerNorm(block.norm2.normalized_shape, eps=1e-3).eval()
        elif edit == "appended":
            model.stage3.hr_modules[0].branches[1].append(_Scale().eval())
        else:
            model.double().float()  # new storage for every tensor, same values
    after = _settled(model, x, calls=1)
    assert _same(after, _as_written(model, x))
    assert _same(after, before) == (edit == "to_dtype")
    _settled(model, x)
    assert _programs(model)  # recorded again on the changed model


def test_hooks_run_and_hooked_modules_are_called():
    model = _fused("pose")
    x = torch.randn(1, 3, 61, 45)
    _settled(model, x)
    calls = []
    handle = model.stage3.hr_modules[0].branches[1].register_forward_hook(lambda *_: calls.append(1))
    for n in range(1, 4):
        _settled(model, x, calls=1)
        assert len(calls) == n
    handle.remove()
    _settled(model, x)
    global_handle = torch.nn.modules.module.register_module_forward_hook(lambda module, *_: calls.append(module))
    try:
        _settled(model, x, calls=1)
    finally:
        global_handle.remove()
    assert model.stage3.hr_modules[0] in calls  # a module inside the backbone


def test_a_submodule_put_in_training_mode_runs_as_written():
    model = _fused("pose")
    block = model.stage3.hr_modules[0].branches[1][0]
    block.norm2 = nn.Sequential(block.norm2, nn.Dropout(0.5)).eval()
    x = torch.randn(1, 3, 61, 45)
    settled = _settled(model, x)
    assert _programs(model)
    block.norm2.train()
    assert not _same(_settled(model, x, calls=1), settled)  # dropout drew a mask


def test_non_finite_inputs_and_other_modes_run_as_written():
    model = _fused("pose")
    x = torch.randn(1, 3, 61, 45)
    _settled(model, x)
    x[0, 0, 3, 3] = float("nan")
    assert torch.isnan(_settled(model, x, calls=1)).any()

    class Counting(TorchFunctionMode):
        seen = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counting.seen += 1
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 3, 61, 45)
    out = _settled(model, x)
    with Counting():
        assert _same(_settled(model, x, calls=1), out)
    assert Counting.seen > 100  # the ops were called where the mode sees them
    with torch.enable_grad():
        assert model(x).grad_fn is not None  # the public ops, recorded by autograd
    assert _same(out, _as_written(model, x))


def test_switched_off_nothing_is_recorded(monkeypatch):
    monkeypatch.setattr(replay, "enabled", False)
    model = _fused("pose")
    _settled(model, torch.randn(1, 3, 61, 45))
    assert not model.fused.replays._entries


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("1", True), ("", True)])
def test_replay_switch_environment_variable(monkeypatch, value, enabled):
    monkeypatch.setenv("HRFORMER_REPLAY", value)
    assert replay.enabled_from_environment() == enabled


def test_copies_and_pickles_record_their_own():
    model = _fused("pose")
    x = torch.randn(1, 3, 61, 45)
    out = _settled(model, x)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model.fused))):
        replays = other.fused.replays if isinstance(other, nn.Module) else other.replays
        assert not replays._entries
    clone = copy.deepcopy(model)
    assert _same(_settled(clone, x), out) and _programs(clone)


def test_threads_share_a_replayed_model():
    model = _fused("pose")
    xs = [torch.randn(1, 3, 61, 45) for _ in range(3)]
    expected = [_as_written(model, x) for x in xs]
    failures = []

    def work(i):
        for _ in range(SETTLE + 2):
            if not _same(_settled(model, xs[i], calls=1), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and _programs(model)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.eval()


def _toy_run(replays, toy, forward, x):
    with torch.no_grad():
        return replays.run(forward, x, [(nn.ModuleDict({"toy": toy}), "toy", toy)], ())


def test_a_forward_that_reads_values_is_never_replayed():
    toy = _Toy()
    replays = OpReplays()

    def forward(x):
        y = toy.lin(x)
        return y * 2 if y.sum().item() > 0 else -y  # the branch depends on the data

    for sign in (1, 1, 1, 1, -1, -1, 1):  # settled on positive inputs, then a negative one
        x = sign * torch.ones(2, 4)
        out = _toy_run(replays, toy, forward, x)
        assert torch.equal(out, forward(x))
    assert not [e for e in replays._entries.values() if type(e) is replay._Program]


def test_a_program_frees_each_intermediate_after_its_last_use_and_skips_no_op_calls():
    toy = _Toy()
    replays = OpReplays()

    def forward(x):
        a = toy.lin(x)
        b = a.relu().contiguous()  # already contiguous: the same tensor, nothing to replay
        c = toy.lin(b)
        return [c + x, a]

    x = torch.randn(3, 4)
    for _ in range(3):
        out = _toy_run(replays, toy, forward, x)
    program = next(e for e in replays._entries.values() if type(e) is replay._Program)
    assert torch.equal(out[0], forward(x)[0]) and torch.equal(out[1], forward(x)[1])
    lines = [line.strip() for line in program.source.splitlines()]
    calls = {line.split(" = ")[0]: program.constants[int(line.split(" = ")[1].split("(")[0][1:])]
             for line in lines if " = " in line}
    relu, first_linear = next(s for s, f in calls.items() if f is torch.Tensor.relu), next(iter(calls))
    deleted = {name.strip() for line in lines if line.startswith("del ") for name in line[4:].split(",")}
    assert relu in deleted and first_linear not in deleted  # b is freed; a, an output, is not
    assert len(calls) == 4  # linear, relu, linear, add


def test_a_weight_returned_unchanged_stays_the_models_tensor():
    toy = _Toy()
    replays = OpReplays()

    def forward(x):  # contiguous() of a contiguous parameter returns the parameter itself
        return torch.nn.functional.linear(x, toy.lin.weight.contiguous(), toy.lin.bias)

    x = torch.randn(3, 4)
    for _ in range(3):
        _toy_run(replays, toy, forward, x)
    assert [e for e in replays._entries.values() if type(e) is replay._Program]
    with torch.no_grad():
        toy.lin.weight.mul_(2)  # read by the replay as it is now
    assert torch.equal(_toy_run(replays, toy, forward, x), forward(x))


def test_many_kinds_of_input_keep_the_recent_programs_and_stop_recording(monkeypatch):
    """Pose batches of every size up to the batch size: more kinds of input than programs kept. The
    least recently used kind is dropped, and recording stops at the model's budget."""
    monkeypatch.setattr(replay, "MAX_PROGRAMS", 2)
    monkeypatch.setattr(replay, "MAX_RECORDINGS_PER_MODEL", 9)
    toy = _Toy()
    replays = OpReplays()

    def forward(x):
        return toy.lin(x).relu()

    xs = {n: torch.randn(n, 4) for n in (1, 2, 3)}
    for n in (1, 1, 1, 2, 2, 2):  # two programs
        _toy_run(replays, toy, forward, xs[n])
    assert replays.recordings == 4
    _toy_run(replays, toy, forward, xs[1])  # 1 used last: 2 is dropped for 3
    for _ in range(3):
        _toy_run(replays, toy, forward, xs[3])
    assert [k[0][0] for k, e in replays._entries.items() if type(e) is replay._Program] == [1, 3]
    for n in (2, 1, 3) * 4:  # cycling through three kinds with room for two
        assert torch.equal(_toy_run(replays, toy, forward, xs[n]), forward(xs[n]))
    assert replays.recordings == 9  # the budget, then as written
