#!/usr/bin/env python3
"""Times PyTorch (eager) and JAX (jit) on the workloads of `cargo xtask bench`.

Each workload is the bench's own: the same shapes, float32, the value and
its gradient (and, for `train` and `cnn`, one SGD(0.1) step), timed the way
the bench times (warm-up, then the median of seven samples of many
iterations). Every (peer, thread count) runs in a fresh Python process so
that the thread settings take effect before the framework starts; one
thread also pins the process to one core.

    python scripts/peers/peers.py --out target/bench/peers.json
    python scripts/peers/peers.py --peers jax --threads 1 --filter cnn --quick

then `cargo xtask bench --peers target/bench/peers.json` prints polyhead's
ratio to each peer at the same thread count. Requirements (pinned):
scripts/peers/requirements.txt.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

WORKLOADS = ["ce", "bce", "mse", "multi", "train", "cnn", "seq"]


def shapes(workload, quick):
    """The bench's shapes for a workload: (shape label, arguments)."""
    if workload == "ce":
        pairs = [(32, 10), (1024, 10)] if quick else [
            (32, 10), (1024, 10), (65536, 10), (1024, 1000), (16384, 1000)]
        return [(f"{b}x{c}", (b, c)) for b, c in pairs]
    if workload == "bce":
        rows = [1024] if quick else [1024, 65536]
        return [(f"{b}x10", (b, 10)) for b in rows]
    if workload == "mse":
        batches = [32, 1024] if quick else [32, 1024, 65536]
        return [(f"{b}x4", (b,)) for b in batches]
    if workload == "multi":
        batches = [32] if quick else [32, 1024, 65536]
        return [(f"{b}", (b,)) for b in batches]
    if workload == "train":
        batches = [128] if quick else [128, 1024]
        return [(f"{b}", (b,)) for b in batches]
    if workload == "cnn":
        batches = [32] if quick else [32, 256]
        return [(f"{b}x28x28", (b,)) for b in batches]
    if workload == "seq":
        batches = [32] if quick else [32, 128]
        return [(f"{b}x32", (b,)) for b in batches]
    raise ValueError(workload)


def median_seconds(step, quick):
    """The bench's timing: warm up for a quarter of the budget, then the
    median of seven samples, each as many iterations as fit a seventh."""
    budget = 0.05 if quick else 0.4
    start = time.perf_counter()
    iters = 0
    while time.perf_counter() - start < budget / 4 or iters < 3:
        step()
        iters += 1
    per = (time.perf_counter() - start) / iters
    inner = max(1, int(budget / 7 / per))
    samples = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - t) / inner)
    samples.sort()
    return samples[3]


# ---------------------------------------------------------------- PyTorch


def torch_steps(threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    gen = torch.Generator().manual_seed(0)

    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=gen) * std

    def classes(b, c):
        return torch.randint(0, c, (b,), generator=gen)

    def ce(b, c):
        logits = normal(b, c, std=3.0).requires_grad_()
        y = classes(b, c)

        def step():
            logits.grad = None
            F.cross_entropy(logits, y).backward()
        return step

    def bce(b, c):
        logits = normal(b, c, std=3.0).requires_grad_()
        t = (torch.rand(b, c, generator=gen) < 0.5).float()

        def step():
            logits.grad = None
            F.binary_cross_entropy_with_logits(logits, t).backward()
        return step

    def mse(b):
        p = normal(b, 4).requires_grad_()
        t = normal(b, 4)

        def step():
            p.grad = None
            F.mse_loss(p, t).backward()
        return step

    def multi(b):
        class_out = normal(b, 10, std=3.0).requires_grad_()
        bbox_out = normal(b, 4).requires_grad_()
        y = classes(b, 10)
        box = torch.rand(b, 4, generator=gen)

        def step():
            class_out.grad = None
            bbox_out.grad = None
            loss = F.cross_entropy(class_out, y) + 0.5 * F.mse_loss(bbox_out, box)
            loss.backward()
        return step

    def sgd_step(params, opt, loss_fn):
        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()
        return step

    def train(b):
        hidden = torch.nn.Linear(784, 64)
        class_head = torch.nn.Linear(64, 10)
        bbox_head = torch.nn.Linear(64, 4)
        params = [*hidden.parameters(), *class_head.parameters(), *bbox_head.parameters()]
        opt = torch.optim.SGD(params, lr=0.1)
        x = torch.rand(b, 784, generator=gen)
        y = classes(b, 10)
        box = torch.rand(b, 4, generator=gen)

        def loss():
            h = torch.relu(hidden(x))
            return F.cross_entropy(class_head(h), y) + 0.5 * F.mse_loss(bbox_head(h), box)
        return sgd_step(params, opt, loss)

    def cnn(b):
        # PyTorch's own layout (NCHW), as its users write it.
        conv1 = torch.nn.Conv2d(1, 16, 3, padding="same")
        conv2 = torch.nn.Conv2d(16, 32, 3, padding="same")
        class_head = torch.nn.Linear(32, 10)
        bbox_head = torch.nn.Linear(32, 4)
        params = [*conv1.parameters(), *conv2.parameters(),
                  *class_head.parameters(), *bbox_head.parameters()]
        opt = torch.optim.SGD(params, lr=0.1)
        x = torch.rand(b, 1, 28, 28, generator=gen)
        y = classes(b, 10)
        box = torch.rand(b, 4, generator=gen)

        def loss():
            h = F.max_pool2d(torch.relu(conv1(x)), 2)
            h = F.max_pool2d(torch.relu(conv2(h)), 2)
            h = h.mean(dim=(2, 3))
            return F.cross_entropy(class_head(h), y) + 0.5 * F.mse_loss(bbox_head(h), box)
        return sgd_step(params, opt, loss)

    def seq(b):
        embedding = torch.nn.Embedding(1000, 64)
        lstm = torch.nn.LSTM(64, 64, batch_first=True)
        tokens = torch.nn.Linear(64, 9)
        utterance = torch.nn.Linear(64, 5)
        params = [*embedding.parameters(), *lstm.parameters(), *tokens.parameters(),
                  *utterance.parameters()]
        opt = torch.optim.SGD(params, lr=0.1)
        ids = torch.randint(0, 1000, (b, 32), generator=gen)
        token_labels = torch.randint(0, 9, (b, 32), generator=gen)
        labels = classes(b, 5)

        def loss():
            h, _ = lstm(embedding(ids))
            return F.cross_entropy(tokens(h).reshape(-1, 9), token_labels.reshape(-1)) \
                + 0.5 * F.cross_entropy(utterance(h.mean(dim=1)), labels)
        return sgd_step(params, opt, loss)

    return {"ce": ce, "bce": bce, "mse": mse, "multi": multi, "train": train, "cnn": cnn,
            "seq": seq}, f"pytorch {torch.__version__} (eager)"


# ---------------------------------------------------------------- JAX


def jax_steps(threads):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    key = jax.random.PRNGKey(0)
    keys = iter(jax.random.split(key, 1024))

    def normal(*shape, std=1.0):
        return jax.random.normal(next(keys), shape, jnp.float32) * std

    def uniform(*shape):
        return jax.random.uniform(next(keys), shape, jnp.float32)

    def classes(b, c):
        return jax.random.randint(next(keys), (b,), 0, c)

    def sparse_ce(logits, y):
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def mse_loss(p, t):
        return jnp.mean((p - t) ** 2)

    def ready(f, *args):
        def step():
            jax.block_until_ready(f(*args))
        return step

    def ce(b, c):
        return ready(jax.jit(jax.value_and_grad(sparse_ce)), normal(b, c, std=3.0), classes(b, c))

    def bce_loss(x, t):
        # optax.sigmoid_binary_cross_entropy's stable form, averaged.
        return jnp.mean(jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x))))

    def bce(b, c):
        t = (uniform(b, c) < 0.5).astype(jnp.float32)
        return ready(jax.jit(jax.value_and_grad(bce_loss)), normal(b, c, std=3.0), t)

    def mse(b):
        return ready(jax.jit(jax.value_and_grad(mse_loss)), normal(b, 4), normal(b, 4))

    def multi(b):
        def loss(outs, y, box):
            return sparse_ce(outs[0], y) + 0.5 * mse_loss(outs[1], box)
        f = jax.jit(jax.value_and_grad(loss))
        return ready(f, (normal(b, 10, std=3.0), normal(b, 4)), classes(b, 10), uniform(b, 4))

    def dense(i, o):
        lim = (6.0 / (i + o)) ** 0.5
        return {"w": jax.random.uniform(next(keys), (i, o), jnp.float32, -lim, lim),
                "b": jnp.zeros((o,), jnp.float32)}

    def sgd_loop(loss, params, *data):
        @jax.jit
        def update(params, *data):
            value, grads = jax.value_and_grad(loss)(params, *data)
            return value, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        state = {"params": params}

        def step():
            value, state["params"] = update(state["params"], *data)
            jax.block_until_ready(value)
        return step

    def train(b):
        params = {"hidden": dense(784, 64), "class": dense(64, 10), "bbox": dense(64, 4)}

        def loss(p, x, y, box):
            h = jax.nn.relu(x @ p["hidden"]["w"] + p["hidden"]["b"])
            return sparse_ce(h @ p["class"]["w"] + p["class"]["b"], y) \
                + 0.5 * mse_loss(h @ p["bbox"]["w"] + p["bbox"]["b"], box)
        return sgd_loop(loss, params, uniform(b, 784), classes(b, 10), uniform(b, 4))

    def cnn(b):
        def conv(cin, cout):
            lim = (6.0 / (9 * cin + 9 * cout)) ** 0.5
            return {"w": jax.random.uniform(next(keys), (3, 3, cin, cout), jnp.float32, -lim, lim),
                    "b": jnp.zeros((cout,), jnp.float32)}
        params = {"conv1": conv(1, 16), "conv2": conv(16, 32),
                  "class": dense(32, 10), "bbox": dense(32, 4)}
        dn = ("NHWC", "HWIO", "NHWC")

        def conv_relu(p, x):
            y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME", dimension_numbers=dn)
            return jax.nn.relu(y + p["b"])

        def pool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

        def loss(p, x, y, box):
            h = pool(conv_relu(p["conv1"], x))
            h = pool(conv_relu(p["conv2"], h))
            h = jnp.mean(h, axis=(1, 2))
            return sparse_ce(h @ p["class"]["w"] + p["class"]["b"], y) \
                + 0.5 * mse_loss(h @ p["bbox"]["w"] + p["bbox"]["b"], box)
        return sgd_loop(loss, params, uniform(b, 28, 28, 1), classes(b, 10), uniform(b, 4))

    def seq(b):
        lim_k = (6.0 / (64 + 256)) ** 0.5
        params = {
            "embedding": jax.random.uniform(next(keys), (1000, 64), jnp.float32, -0.05, 0.05),
            "kernel": jax.random.uniform(next(keys), (64, 256), jnp.float32, -lim_k, lim_k),
            "recurrent": jax.random.uniform(next(keys), (64, 256), jnp.float32, -lim_k, lim_k),
            "bias": jnp.zeros((256,), jnp.float32),
            "tokens": dense(64, 9),
            "utterance": dense(64, 5),
        }

        def lstm(p, x):
            b = x.shape[0]
            xz = x @ p["kernel"] + p["bias"]  # every step's input projection at once

            def step(carry, z):
                h, c = carry
                z = z + h @ p["recurrent"]
                i, f, g, o = jnp.split(z, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            zeros = jnp.zeros((b, 64), jnp.float32)
            _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xz, 0, 1))
            return jnp.swapaxes(hs, 0, 1)

        def loss(p, ids, token_labels, labels):
            h = lstm(p, p["embedding"][ids])
            logits = h @ p["tokens"]["w"] + p["tokens"]["b"]
            per_token = sparse_ce(logits.reshape(-1, 9), token_labels.reshape(-1))
            pooled = h.mean(axis=1)
            return per_token + 0.5 * sparse_ce(pooled @ p["utterance"]["w"] + p["utterance"]["b"], labels)
        ids = jax.random.randint(next(keys), (b, 32), 0, 1000)
        token_labels = jax.random.randint(next(keys), (b, 32), 0, 9)
        return sgd_loop(loss, params, ids, token_labels, classes(b, 5))

    return {"ce": ce, "bce": bce, "mse": mse, "multi": multi, "train": train, "cnn": cnn,
            "seq": seq}, f"jax {jax.__version__} (jit)"


# ---------------------------------------------------------------- driver


def run_one(peer, threads, workloads, quick):
    """Runs in the child process: every workload of one peer at one thread count."""
    if threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    steps, name = (torch_steps if peer == "pytorch" else jax_steps)(threads)
    rows = []
    for workload in workloads:
        for shape, args in shapes(workload, quick):
            seconds = median_seconds(steps[workload](*args), quick)
            rows.append({"workload": workload, "shape": shape, "threads": threads,
                         "seconds_per_iter": seconds})
            print(f"{name:28} {workload:6} {shape:12} {threads} thr  "
                  f"{seconds * 1e3:9.3f} ms", file=sys.stderr, flush=True)
    return {"peer": name, "rows": rows}


def child_env(peer, threads):
    env = dict(os.environ)
    if peer == "jax":
        # XLA's CPU client: one intra-op thread, no Eigen thread pool.
        flags = env.get("XLA_FLAGS", "")
        if threads == 1:
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = flags.strip()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="pytorch,jax", help="pytorch,jax")
    parser.add_argument("--threads", default=None,
                        help="thread counts, e.g. 1,2 (default: 1 and all cores)")
    parser.add_argument("--filter", default=",".join(WORKLOADS), help=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="the bench's --quick shapes")
    parser.add_argument("--out", default="-", help="JSON file to write (default stdout)")
    parser.add_argument("--child", nargs=2, metavar=("PEER", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = [w for w in args.filter.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]), workloads, args.quick)))
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else \
        sorted({1, cores})
    peers = []
    for peer in args.peers.split(","):
        if peer not in ("pytorch", "jax"):
            parser.error(f"unknown peer {peer!r} (known: pytorch, jax)")
        rows, name = [], None
        for threads in thread_counts:
            cmd = [sys.executable, __file__, "--child", peer, str(threads),
                   "--filter", ",".join(workloads)] + (["--quick"] if args.quick else [])
            out = subprocess.run(cmd, env=child_env(peer, threads), check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            result = json.loads(out)
            name = result["peer"]
            rows.extend(result["rows"])
        peers.append({"peer": name, "rows": rows})
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    doc = {
        "schema": "polyhead-peers/v1",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": cores, "processor": model,
                    "python": platform.python_version()},
        "quick": args.quick,
        "peers": peers,
    }
    text = json.dumps(doc, indent=2)
    if args.out == "-":
        print(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
