"""What the notebook API takes: a torch Dataset or DataLoader of (image, label), read in batches,
and a model that is put in eval mode on a device for the call and restored afterwards."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from unit_ablation.runtime.device import choose_device, set_precision

Data = Dataset | DataLoader


def loader(data: Data, batch_size: int) -> DataLoader:
    """The DataLoader to read: `data` itself, or the dataset in order, `batch_size` items a batch."""
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "the DataLoader shuffles: the evaluation halves (and the per-half counts) then differ "
                "from run to run; pass the Dataset, or a DataLoader with shuffle=False",
                stacklevel=3,
            )
        return data
    if not isinstance(data, Dataset):
        raise TypeError(
            f"data must be a torch Dataset or DataLoader of (image, label), not {type(data).__name__}"
        )
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def batches(data: Data, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches on `device`, labels as int64, in the data's order."""
    items = iter(loader(data, batch_size))
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except TypeError as error:  # default_collate on PIL images, numbers of mixed types, ...
            raise TypeError(
                f"cannot batch the data's items ({error}): each item must be (image tensor, label); "
                "give the Dataset a transform such as torchvision.transforms.ToTensor()"
            ) from error
        if not isinstance(item, Sequence) or len(item) < 2 or not isinstance(item[0], torch.Tensor):
            raise TypeError(f"each batch must be (images, labels) tensors, not {type(item).__name__}")
        labels = torch.as_tensor(item[1])
        if labels.dtype.is_floating_point or labels.dim() != 1:
            raise TypeError(
                "labels must be class indices (one integer per image), not "
                f"{labels.dtype} {tuple(labels.shape)}"
            )
        yield item[0].to(device, non_blocking=True), labels.to(device).long()


def first_batch(data: Data, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    for batch in batches(data, batch_size, device):
        return batch
    raise ValueError("the data has no images")


def image_count(data: Data) -> int:
    """Images in the data, for progress lines (0 when the dataset has no length)."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return 0


def dataset_class_names(data: Data) -> list[str] | None:
    """A `classes` attribute of the dataset (torchvision datasets have one), through Subsets."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    while True:
        names = getattr(dataset, "classes", None)
        if names is not None:
            return [str(name) for name in names]
        if not hasattr(dataset, "dataset"):
            return None
        dataset = dataset.dataset


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """`device`, where None means the model's own device and "auto" CUDA when available."""
    if device is None:
        return model_device(model)
    if isinstance(device, str) and device in ("auto", "cpu", "cuda"):
        return choose_device(device)
    return torch.device(device)


@contextmanager
def evaluated(model: nn.Module, device: torch.device, precision: str = "exact") -> Iterator[nn.Module]:
    """The model in eval mode on `device`, in `precision` mode; afterwards every module's training
    flag, the model's device and the TF32 settings are as they were."""
    modes = [(module, module.training) for module in model.modules()]
    original = model_device(model)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    set_precision(precision)
    model.eval().to(device)
    try:
        yield model
    finally:
        model.to(original)
        for module, training in modes:
            module.training = training
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
