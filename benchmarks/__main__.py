"""CLI: ``python -m benchmarks [--quick] [--ops max_unpool2d] [--providers ...] [--out DIR]``."""
import argparse
import os
import time

import torch

from . import common, discover


def main(argv=None):
    ops = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small shapes, fp32 only (CPU / CI smoke run)")
    parser.add_argument("--ops", default=",".join(ops),
                        help=f"comma-separated ops to run (default: all of {', '.join(ops)})")
    parser.add_argument("--providers", default=",".join(common.PROVIDERS),
                        help="comma-separated providers (default: %(default)s)")
    common.add_device_and_out(
        parser, "results root; files go to OUT/<device>/ (default: benchmarks/results)",
        device_help="default: cuda when available")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's); 1 gives steadier CPU timings "
                             "on a shared machine")
    args, device, log = common.parse_run_args(parser, argv, verbose_help="log each measurement")

    selected = [o.strip() for o in args.ops.split(",") if o.strip()]
    wanted = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    for name, known in (("op", ops), ("provider", common.PROVIDERS)):
        unknown = [x for x in (selected if name == "op" else wanted) if x not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {unknown}; choose from {list(known)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    copy_bw = common.copy_bandwidth(device)
    env = common.environment(device, copy_bw, args.quick)
    out_dir = os.path.join(args.out, common.device_name(device))
    print("# pydense benchmarks\n")
    print("\n".join(f"- {k}: {v}" for k, v in env))
    for op in selected:
        rows, skipped = common.run_op(ops[op], device, args.quick, copy_bw, wanted, log)
        print(f"\n## {op}\n")
        for provider, why in skipped.items():
            print(f"- skipped {provider}: {why}")
        print("\n" + common.markdown_table(rows))
        common.write_csv(os.path.join(out_dir, f"{op}.csv"), rows)
    common.write_env(os.path.join(out_dir, "env.txt"), env)
    print(f"\nresults: {out_dir} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
