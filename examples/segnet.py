"""SegNet forward pass with pydense's ops: output shape, parameter count, timing, and the memory of
the pooling indices kept for the decoder (int64 flat vs uint8 compact).

    python examples/segnet.py            # CUDA at 360x480 (CamVid) if a GPU exists, else CPU small
"""
import time

import torch

import pydense
import pydense.models


def index_bytes(model, x):
    """Bytes of the five pools' indices for input x (what the decoder keeps alive)."""
    sizes = []
    hook = model.pool.register_forward_hook(lambda m, i, o: sizes.append(o[1].numel() * o[1].element_size()))
    with torch.no_grad():
        model(x)
    hook.remove()
    return sum(sizes)


def main():
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    n, h, w = (4, 360, 480) if cuda else (1, 45, 60)
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    model = pydense.models.segnet(11, compact_indices=True).to(device).eval()
    x = torch.randn(n, 3, h, w, device=device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=cuda):
        out = model(x)  # warm-up (Triton compiles its kernels on first use)
        if cuda:
            torch.cuda.synchronize()
        runs = 10 if cuda else 2
        start = time.perf_counter()
        for _ in range(runs):
            out = model(x)
        if cuda:
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / runs * 1e3
    print(f"device: {device} ({torch.cuda.get_device_name() if cuda else 'CPU'}), input {tuple(x.shape)}")
    print(f"output shape: {tuple(out.shape)}")
    print(f"parameters: {params:,}")
    print(f"forward: {ms:.2f} ms per batch ({'bf16 autocast, ' if cuda else ''}backend='auto', compact indices)")
    flat = pydense.models.segnet(11, compact_indices=False).to(device).eval()
    flat.load_state_dict(model.state_dict())
    b_flat, b_compact = index_bytes(flat, x), index_bytes(model, x)
    print(f"pooling indices kept for the decoder: int64 {b_flat / 2**20:.2f} MiB, "
          f"compact uint8 {b_compact / 2**20:.2f} MiB ({b_flat / b_compact:.0f}x less)")


if __name__ == "__main__":
    main()
