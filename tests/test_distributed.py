"""Distributed training on an existing engine: DistributedDataParallel (gloo, 2 CPU processes,
find_unused_parameters=False) gives the single-process gradients on the same global batch, for the
backbone and every head; SyncBatchNorm conversion keeps the state dict keys."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import hrformer
from hrformer.config import HRFORMER_T
from hrformer.heads import HEADS

CASES = [None, *HEADS]


def _model(head):
    """Every building block once (one module per stage, one block per branch); BatchNorm and dropout
    in eval mode: without SyncBatchNorm each process normalises with its own half-batch statistics."""
    torch.manual_seed(0)
    kwargs = {HEADS[head].output_arg: 3} if head else {}
    config = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1, **(HEADS[head].config_defaults if head else {}))
    model = hrformer.HRFormer(config, head=head, norm_eval=True, **kwargs).train()
    for m in model.modules():  # the OCR head's fixed Dropout2d would draw differently per process
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    return model


def _loss(out):
    return sum(o.square().mean() for o in (out if isinstance(out, list) else [out]))


def _batch():
    return torch.randn(4, 3, 32, 28, generator=torch.Generator().manual_seed(1))


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        for head in CASES:
            model = DistributedDataParallel(_model(head), find_unused_parameters=False)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            _loss(model(_batch()[rank * 2:(rank + 1) * 2])).backward()
            grads = {n: p.grad.clone() for n, p in model.module.named_parameters() if p.grad is not None}
            optimizer.step()
            if rank == 0:
                results[str(head)] = grads
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_the_single_process_step():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    x = _batch()
    for head in CASES:
        reference = _model(head)
        # DDP averages the two processes' gradients: the mean of the two half-batch losses.
        ((_loss(reference(x[:2])) + _loss(reference(x[2:]))) / 2).backward()
        expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
        got = results[str(head)]
        assert got.keys() == expected.keys() == {n for n, p in reference.named_parameters() if p.requires_grad}
        for n, g in expected.items():
            torch.testing.assert_close(got[n], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{head}: {n}: {m}")


def test_sync_batch_norm_conversion_keeps_the_state_dict_keys():
    keys = list(hrformer.create_model("hrformer_t", head="pose").state_dict())
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(hrformer.create_model("hrformer_t", head="pose"))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert list(converted.state_dict()) == keys
