"""Shared by the example scripts: build a model on the available device, run a forward pass,
print the output shape, the parameter count and the time per forward (pydense vs stock PyTorch)."""
import argparse
import time

import torch

from pydense import models


def main(description, factory, gpu_shape, cpu_shape, trainable_only=False, **kwargs):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = gpu_shape if device.type == "cuda" else cpu_shape
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = (torch.rand(shape, device=device) * 255).contiguous(memory_format=fmt)
    fused = factory(**kwargs, backend="auto").to(device, memory_format=fmt).eval()
    eager = factory(**kwargs, backend="torch").to(device, memory_format=fmt).eval()
    eager.load_state_dict(fused.state_dict())
    count = models.parameter_count(fused, trainable_only)
    print(f"{description}: {count:,} {'trainable ' if trainable_only else ''}parameters, input "
          f"{tuple(shape)} on {device} ({'bf16 autocast' if args.bf16 else 'fp32'}"
          f"{', channels_last' if args.channels_last else ''})")
    for name, model in (("pydense", fused), ("torch", eager)):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
            out = model(x)  # warm-up (Triton compiles and autotunes on first use)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 3
            for _ in range(n):
                out = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / n * 1e3
        print(f"  {name:8s} output {tuple(out.shape)}  {ms:9.2f} ms per forward")
