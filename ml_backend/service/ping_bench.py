"""``python -m ml_backend ping-bench``: round-trip times of the worker service.

Starts a worker, then ``--clients`` connections (each in its own thread) send ``--requests`` pings each, all at
once; prints the median and 99th percentile of the round trip. Then ``estimate_pose`` runs on the query images
of a dataset (``--dataset``, else a tiny one rendered through Blender into the bench cache) and the overhead of
the service over the method's own compute (``timings.compute``) is printed: round trip - compute, and the part of
it spent inside the worker (``timings.server`` - compute).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--requests", type=int, default=1000, help="pings per client")
    p.add_argument("--dataset", default=None, help="dataset with reference and query splits (default: render one)")
    p.add_argument("--estimates", type=int, default=12, help="estimate_pose calls for the overhead figure")
    p.add_argument("--no-estimate", action="store_true", help="pings only")
    p.add_argument("--cache", default=None, help="cache folder of the rendered dataset")


def _pct(xs: list, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def ping_round_trips(client_factory, n_clients: int, n_requests: int) -> list:
    """Round trips in seconds of ``n_clients`` concurrent connections sending ``n_requests`` pings each."""
    clients = [client_factory() for _ in range(n_clients)]
    barrier = threading.Barrier(n_clients)
    out: list = [None] * n_clients

    def worker(i):
        c = clients[i]
        for _ in range(20):  # warm-up
            c.request("ping")
        barrier.wait()
        rtt = []
        for _ in range(n_requests):
            t0 = time.perf_counter()
            c.request("ping")
            rtt.append(time.perf_counter() - t0)
        out[i] = rtt

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    return [x for r in out for x in r]


def run(args) -> int:
    from ..client import WorkerClient

    with tempfile.TemporaryDirectory() as tmp:
        with WorkerClient.spawn(data_dir=tmp, log_file=str(Path(tmp) / "worker.log")) as w:
            addr = (w.ready["address"], w.ready["port"])
            rtt = ping_round_trips(lambda: WorkerClient.connect(addr, token=w.token), args.clients, args.requests)
            print(f"ping: {args.clients} concurrent clients x {args.requests} requests = {len(rtt)} round trips "
                  f"over TCP loopback: median {statistics.median(rtt) * 1e3:.3f} ms, "
                  f"p99 {_pct(rtt, 99) * 1e3:.3f} ms, max {max(rtt) * 1e3:.3f} ms")
            if args.no_estimate:
                return 0
            ds_dir = Path(args.dataset) if args.dataset else _tiny_dataset(args.cache)
            from pose_addon.core.dataset import Dataset

            ds = Dataset.load(ds_dir)
            job = w.start_job("build_database", dataset=str(ds_dir))
            st = w.wait_job(job["id"], timeout=600)
            if st["state"] != "done":
                print(f"build_database failed: {st['error']}")
                return 1
            db = st["result"]["database"]
            queries = ds.split("query")
            rows = []
            w.estimate_pose(str(ds.path(queries[0].image)), database=db, intrinsics=queries[0].intrinsics.to_dict())
            for i in range(args.estimates):
                q = queries[i % len(queries)]
                t0 = time.perf_counter()
                r = w.estimate_pose(str(ds.path(q.image)), database=db, intrinsics=q.intrinsics.to_dict())
                rt = time.perf_counter() - t0
                rows.append((rt, r["timings"]["compute"], r["timings"]["server"]))
            rt, comp, srv = (statistics.median([r[k] for r in rows]) for k in range(3))
            over = [r[0] - r[1] for r in rows]
            print(f"estimate_pose (sift, {ds.root.name}, {len(rows)} calls): median round trip {rt * 1e3:.2f} ms, "
                  f"compute {comp * 1e3:.2f} ms, overhead {statistics.median(over) * 1e3:.2f} ms median / "
                  f"{max(over) * 1e3:.2f} ms max (in the worker: {(srv - comp) * 1e3:.2f} ms)")
    return 0


def _tiny_dataset(cache) -> Path:
    from ..bench import ensure_dataset, make_render_config
    from ..paths import CACHE_DIR
    from ..scenes import parse_scene

    spec = parse_scene("procedural")
    cfg = make_render_config(spec, 12, 4, 320, 240, "CYCLES", 8)
    cache = Path(cache) if cache else CACHE_DIR
    print("rendering a tiny dataset (12 references, 4 queries, 320x240) through Blender, cached ...")
    return ensure_dataset(spec, cfg, cache, progress=False)
