"""The feed from the loader to the device: order, lookahead, closing; the GPU copies on a GPU."""

from __future__ import annotations

from collections.abc import Generator

import pytest
import torch

from deepcam_hvd.data.batches import Batch
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.device_feed import DeviceFeed, one_ahead

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def test_one_ahead_stages_the_next_item_before_handing_out_the_current() -> None:
    events: list[str] = []

    def stage(item: int) -> int:
        events.append(f"stage {item}")
        return item * 10

    def hand_out(staged: int) -> int:
        events.append(f"out {staged // 10}")
        return staged

    got = []
    for value in one_ahead(range(3), stage, hand_out):
        events.append(f"use {value // 10}")
        got.append(value)
    assert got == [0, 10, 20]
    assert events == ["stage 0", "stage 1", "out 0", "use 0", "stage 2", "out 1", "use 1",
                      "out 2", "use 2"]


def test_one_ahead_of_nothing_and_of_one() -> None:
    assert list(one_ahead([], lambda x: x, lambda x: x)) == []
    assert list(one_ahead([7], lambda x: x + 1, lambda x: x * 2)) == [16]


def test_closing_the_feed_closes_the_loader_pass() -> None:
    closed: list[bool] = []

    def loader() -> Generator[int, None, None]:
        try:
            yield from range(100)
        finally:
            closed.append(True)

    feed = one_ahead(loader(), lambda x: x, lambda x: x)
    assert next(feed) == 0
    feed.close()  # a stop in mid epoch: the reader threads of that pass must end
    assert closed == [True]


def test_an_error_in_the_loader_reaches_the_consumer_after_the_batches_before_it() -> None:
    def loader() -> Generator[int, None, None]:
        yield 1
        yield 2
        raise OSError("bad file")

    feed = one_ahead(loader(), lambda x: x, lambda x: x)
    assert next(feed) == 1
    with pytest.raises(OSError, match="bad file"):
        next(feed)  # staging 3 fails while handing out 2: the error comes one batch early


def test_without_prefetch_the_cpu_feed_hands_on_the_very_batches() -> None:
    batches = [Batch(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64), ["a"])]
    assert DeviceFeed(torch.device("cpu"), prefetch=False)(batches) is batches


def test_prefetch_without_a_gpu_is_one_error() -> None:
    with pytest.raises(ConfigError, match="--device_prefetch on needs a GPU"):
        DeviceFeed(torch.device("cpu"), prefetch=True)


def _host_batches(count: int, pin: bool) -> list[Batch]:
    gen = torch.Generator().manual_seed(3)
    out = []
    for i in range(count):
        data = torch.rand((2, 16, 64, 96), generator=gen)
        label = torch.randint(0, 3, (2, 64, 96), generator=gen)
        if pin:
            data, label = data.pin_memory(), label.pin_memory()
        out.append(Batch(data, label, [f"s{i}"]))
    return out


@needs_gpu
@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "pageable"])
def test_prefetched_batches_arrive_whole_and_in_order_on_the_gpu(pin: bool) -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    host = _host_batches(12, pin)
    seen = []
    for i, batch in enumerate(DeviceFeed(device, prefetch=True)(iter(host))):
        assert batch.data.device == device and batch.label.device == device
        # work on the compute stream that reads the batch, as a forward pass does
        total = (batch.data * 2).sum() + batch.label.sum()
        seen.append((batch.filenames, total))
        assert torch.equal(batch.data.cpu(), host[i].data)
        assert torch.equal(batch.label.cpu(), host[i].label)
    assert [names for names, _ in seen] == [[f"s{i}"] for i in range(12)]
    expected = [(b.data * 2).sum().item() + b.label.sum().item() for b in host]
    assert [t.item() for _, t in seen] == pytest.approx(expected, rel=1e-5)


@needs_gpu
def test_prefetch_memory_is_not_reused_while_the_compute_stream_reads_it() -> None:
    """A slow kernel on the compute stream reads batch N while the copies of later batches
    allocate: with the batches dropped at once, a missing record_stream would let the allocator
    hand batch N's memory to batch N+2's copy before the kernel is done."""
    device = torch.device("cuda", torch.cuda.current_device())
    host = _host_batches(6, pin=True)
    results = []
    for batch in DeviceFeed(device, prefetch=True)(iter(host)):
        torch.cuda._sleep(20_000_000)  # about 10 ms of GPU time before the read
        results.append(batch.data.sum())
    torch.cuda.synchronize(device)
    assert [r.item() for r in results] == pytest.approx([b.data.sum().item() for b in host],
                                                       rel=1e-5)
