"""Hugging Face Accelerate for the training scripts: the same script on the CPU, one GPU or many.

    python -m training.train_syncnet ...                                   # one process: the GPU if any, else the CPU
    accelerate launch -m training.train_syncnet ...                        # as configured (`accelerate config`)
    accelerate launch --num_processes 4 -m training.train_syncnet ...      # 4 GPUs, data parallel
    accelerate launch --cpu -m training.train_syncnet ...                  # forced onto the CPU

Data parallel: every process holds the whole model, draws its own batches (the scripts' samplers seed
their random generator with ``seed + process index``: process 0 draws what a single process draws), and
the gradients are averaged across processes at each step (DistributedDataParallel, through
``accelerator.prepare`` of the module whose ``forward`` computes the loss). The BatchNorm statistics,
which each process updates with its own batches, are copied from the main process after each stage
(:func:`sync_buffers`), and measurements that decide what happens next are averaged over the processes
(:func:`mean_over_processes`), so every process fits, filters and stops alike. Only the main process
writes checkpoints and reports; the models are unwrapped before ``save_pretrained``. With one process
nothing is wrapped and a run computes what it computed before Accelerate.

Several processes on CPUs: ``torchrun --nproc_per_node N -m training.X ... --device cpu`` (gloo);
``accelerate launch --cpu`` starts one process unless MPI is configured.
"""
from __future__ import annotations

import torch
from torch import nn


def make_accelerator(device: str | None = None):
    """An ``Accelerator``; ``device="cpu"`` forces the CPU, anything else lets Accelerate choose (the launcher's
    settings, else the GPU if there is one, else the CPU)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # some losses leave a head unused (e.g. the auxiliary lip head at weight 0): DDP must not wait for its gradients
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=str(device) == "cpu", kwargs_handlers=[ddp])


class LossModule(nn.Module):
    """``forward(*args, **kwargs) = fn(model, *args, **kwargs)``: a loss written against the model's methods,
    as one module call, so that DistributedDataParallel sees the forward pass and averages the gradients."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(self.model, *args, **kwargs)


def per_process_seed(seed: int, accelerator) -> int:
    """The sampling seed of this process: ``seed`` on the main process (as a single process), shifted on the others."""
    return seed + accelerator.process_index


def save_on_main(accelerator, model: nn.Module, directory, **kwargs) -> None:
    """``save_pretrained`` of the unwrapped model, by the main process only."""
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(directory, **kwargs)


def sync_buffers(accelerator, module: nn.Module) -> None:
    """Give every process the main process's buffers (BatchNorm running statistics: each process updates its
    own with its own batches). Call it before a process-wide decision or fit that runs the model in eval mode,
    so that every process computes the same. Nothing to do with one process."""
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def mean_over_processes(accelerator, value: float) -> float:
    """``value`` averaged over the processes (each measured it on its own batches), so that a decision taken on
    it is the same everywhere; unchanged with one process."""
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor(value, dtype=torch.float64, device=accelerator.device), "mean"))
