"""Training throughput and sampling time of the CbLDM networks.

For each network: parameter count and forward + backward + AdamW step
samples per second at batch 32, in float32 and under bf16 autocast. Then
the time to sample 10 candidates for one PDF with each sampler, and the
time to decode them to Laplacians. Inputs are real: PDFs and Laplacians of
ase clusters (the networks are untrained, which does not change speed).

Usage::

    python benchmarks/model_throughput.py             # 1 and 2 threads
    python benchmarks/model_throughput.py --variants  # also other sizes

Rates are given per wall-clock second and per CPU second of the process:
on a shared machine the second is the robust one.

Prints a table and writes ``benchmarks/results/model_throughput.json``.
"""

import argparse
import logging
import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diffpy_cbldm.atomic import write_json
from diffpy_cbldm.conventions import normalise_pdf
from diffpy_cbldm.model.config import (
    CbLDMConfig,
)
from diffpy_cbldm.model.pipeline import CbLDMPipeline, make_scheduler
from diffpy_cbldm.model.registry import build_modules

RESULTS = Path(__file__).parent / "results" / "model_throughput.json"
BATCH = 32


def cpu_name():
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def example_batch(conventions, batch=BATCH):
    """PDFs (normalised) and Laplacians of `batch` real ase clusters."""
    from ase.cluster import Decahedron, Icosahedron, Octahedron

    from diffpy_cbldm.clusters.laplacian import laplacian
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    clusters = [
        Icosahedron("Au", 3, latticeconstant=4.08),
        Icosahedron("Pt", 4, latticeconstant=3.92),
        Octahedron("Cu", 7, latticeconstant=3.61),
        Decahedron("Ag", 3, 2, 1, latticeconstant=4.09),
    ]
    calc = DebyePDFCalculator.from_settings(conventions.pdf)
    _, g = calc.batch(clusters)
    pdf = normalise_pdf(torch.tensor(g, dtype=torch.float32), conventions)
    lap = np.array([laplacian(a, conventions.sigma) for a in clusters])
    index = torch.arange(batch) % len(clusters)
    return pdf[index], torch.tensor(lap)[index]


def train_rate(module, step_loss, seconds, bf16):
    """Forward + backward + AdamW step at batch BATCH.

    Returns samples per wall-clock second and per CPU second of this
    process (all threads). On a shared machine the CPU-time rate is the
    robust one: it does not count time other jobs held the cores.
    """
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def one():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        one()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or n < 3:
        one()
        n += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return n * BATCH / wall, n * BATCH / cpu


def params(module):
    return sum(p.numel() for p in module.parameters())


def measure_training(config, pdf, L, seconds):
    modules = build_modules(config)
    cvae = modules["condition_vae"]
    svae = modules["structure_vae"]
    den = modules["denoiser"]
    with torch.no_grad():
        z_c = cvae.condition(pdf)
        x0 = svae.encode(L, z_c)[0]
    scheduler = make_scheduler("ddpm", config)
    losses = {
        "condition_vae": lambda: cvae.loss(pdf)["loss"],
        "structure_vae": lambda: svae.loss(L, z_c)["loss"],
        "denoiser": lambda: den.loss(x0, z_c, scheduler),
    }
    rows = []
    for name, fn in losses.items():
        row = {"network": name, "params": params(modules[name])}
        for bf16 in (False, True):
            key = "bf16" if bf16 else "float32"
            wall, cpu = train_rate(modules[name], fn, seconds, bf16)
            row[key] = wall
            row[key + "_per_cpu_second"] = cpu
        logging.info("%s", row)
        rows.append(row)
    return rows


def measure_sampling(config, pdf, repeats=1):
    modules = build_modules(config)
    pipe = CbLDMPipeline(
        modules["condition_vae"],
        modules["structure_vae"],
        modules["denoiser"],
        config,
    )
    z_c = modules["condition_vae"].condition(pdf[:1])
    cases = [
        ("cbldm (ddpm base, t1=400, t2=700)", {"sampler": "cbldm"}),
        ("ddpm, all 1000 steps", {"sampler": "ddpm"}),
        ("ddim, 50 steps", {"sampler": "ddim", "steps": 50}),
        ("dpm-solver++, 20 steps", {"sampler": "dpm", "steps": 20}),
        (
            "cbldm (dpm base, 20 steps)",
            {"sampler": "cbldm", "base": "dpm", "steps": 20},
        ),
    ]
    rows = []
    for label, kw in cases:
        times = []
        for _ in range(repeats):
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            latents = pipe.sample_latents(z_c, 10, generator=g, **kw)
            times.append(time.perf_counter() - t0)
        rows.append({"sampler": label, "seconds": min(times)})
        logging.info("%s", rows[-1])
    with torch.no_grad():
        t0 = time.perf_counter()
        modules["structure_vae"].decode(latents)
        decode = time.perf_counter() - t0
    rows.append({"sampler": "decode 10 latents", "seconds": decode})
    return rows


def variants(base):
    """Alternative sizes measured while choosing the defaults."""
    s, d, c = base.structure, base.denoiser, base.condition
    return {
        "condition VAE (16, 32, 64)": replace(
            base, condition=replace(c, channels=(16, 32, 64))
        ),
        "structure VAE patch 16, (96,)": replace(
            base,
            structure=replace(
                s, encoder_channels=(96,), decoder_channels=(96,)
            ),
        ),
        "structure VAE patch 8, (48, 96)": replace(
            base,
            structure=replace(
                s,
                patch_size=8,
                encoder_channels=(48, 96),
                decoder_channels=(96, 48),
            ),
        ),
        "denoiser (64, 128, 128)": replace(
            base, denoiser=replace(d, channels=(64, 128, 128))
        ),
        "denoiser (32, 64, 64)": replace(
            base, denoiser=replace(d, channels=(32, 64, 64))
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts"
    )
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--no-sampling", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    threads = [int(t) for t in args.threads.split(",")]

    config = CbLDMConfig()
    pdf, L = example_batch(config.conventions)
    result = {
        "machine": cpu_name(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "batch": BATCH,
        "load_average_at_start": list(os.getloadavg()),
        "config": config.to_dict(),
        "training": {},
    }
    for n in threads:
        torch.set_num_threads(n)
        result["training"][n] = measure_training(config, pdf, L, args.seconds)
    torch.set_num_threads(max(threads))
    if not args.no_sampling:
        result["sampling_threads"] = max(threads)
        result["sampling"] = measure_sampling(config, pdf)
    if args.variants:
        torch.set_num_threads(1)
        result["variants_threads"] = 1
        result["variants"] = {
            label: measure_training(cfg, pdf, L, args.seconds)
            for label, cfg in variants(config).items()
        }
    result["load_average_at_end"] = list(os.getloadavg())

    print(f"\nmachine: {result['machine']}, {result['cpus']} CPUs")
    print(
        f"{'network':<15}{'threads':>8}{'params':>9}{'f32/s':>8}{'bf16/s':>8}"
        f"{'f32/cpu-s':>10}{'bf16/cpu-s':>11}"
    )
    for n, rows in result["training"].items():
        for r in rows:
            print(
                f"{r['network']:<15}{n:>8}{r['params'] / 1e6:>8.2f}M"
                f"{r['float32']:>8.0f}{r['bf16']:>8.0f}"
                f"{r['float32_per_cpu_second']:>10.0f}"
                f"{r['bf16_per_cpu_second']:>11.0f}"
            )
    for row in result.get("sampling", []):
        print(f"{row['sampler']:<40}{row['seconds']:>8.2f} s")
    for label, rows in result.get("variants", {}).items():
        for r in rows:
            print(
                f"[{label}] {r['network']:<14}{r['params'] / 1e6:>6.2f}M"
                f"{r['float32_per_cpu_second']:>8.0f}"
                f"{r['bf16_per_cpu_second']:>8.0f} per CPU-s"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result)


if __name__ == "__main__":
    main()
