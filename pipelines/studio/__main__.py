"""Serve the studio page (docs/studio.md):

    python -m pipelines.studio [--model-dir models/final] [--port 7860] [--host 127.0.0.1]
                               [--concurrency N] [--queue-size 16] [--max-seconds 180] [--max-variations 4]
                               [--out-dir DIR] [--device auto] [--params params.yaml]

Defaults for the sampler come from ``generate.*`` of the params file (the schema's defaults without one); the
model from ``--model-dir``, else ``train.out_dir``. A missing model stops here, before serving, with the command
to run first (one line, exit status 2). Binds to 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from model.network.scan_cuda import CudaScanUnavailableError
from model.runtime.devices import resolve_device
from model.runtime.ray_session import available_cpus
from pipelines.common.cli import run_main
from pipelines.common.logs import setup_logging
from pipelines.common.params import DEFAULT_PARAMS, load_params
from pipelines.generate import ModelMissingError, with_overrides
from pipelines.studio.service import Limits, Studio, StudioError

log = logging.getLogger("pipelines.studio")

LONG_FORM_SECONDS = 180.0  # the longest clip measured in docs/generation.md ("Long-form generation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.studio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="trained model directory (default: train.out_dir, models/final)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--concurrency",
        type=int,
        help="renders at once (default: one per CPU core on a CPU device, 1 on a GPU); the rest wait in a queue",
    )
    parser.add_argument(
        "--queue-size", type=int, default=16, help="requests waiting at most (then 'queue full')"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=LONG_FORM_SECONDS,
        help="cap on the length of any clip a request asks",
    )
    parser.add_argument("--max-variations", type=int, default=4, help="takes per request at most")
    parser.add_argument("--out-dir", help="where takes are written (default: a new temporary folder)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: generate.device)")
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="params file for the sampler defaults")
    return parser.parse_args(argv)


def limits_of(args: argparse.Namespace, on_gpu: bool) -> Limits:
    """The studio's limits from the command line, checked (``StudioError`` names the option)."""
    concurrency = args.concurrency or (1 if on_gpu else available_cpus())
    checks = (
        (concurrency >= 1, f"--concurrency must be >= 1, got {concurrency}"),
        (args.queue_size >= 1, f"--queue-size must be >= 1, got {args.queue_size}"),
        (
            args.max_seconds >= 10.0,
            f"--max-seconds must be >= 10 (the shortest clip), got {args.max_seconds:g}",
        ),
        (1 <= args.max_variations <= 8, f"--max-variations must be 1 to 8, got {args.max_variations}"),
        (0 < args.port < 65536, f"--port must be 1 to 65535, got {args.port}"),
    )
    for ok, message in checks:
        if not ok:
            raise StudioError(message)
    return Limits(args.max_seconds, args.max_variations, concurrency, args.queue_size)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    params = load_params(args.params, missing_ok=True)
    model_dir = Path(args.model_dir or params.train.out_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelMissingError(
            f"no trained model in {model_dir} (config.json missing): run `make repro` first "
            "(or `dvc repro train`), or pass --model-dir DIR"
        )
    settings = with_overrides(params.generate, device=args.device)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise StudioError(
            "the studio needs gradio: pip install -e '.[studio]' (make env installs it)"
        ) from None
    import torch

    from pipelines.studio.app import build_app
    from pipelines.studio.models import list_models

    on_cpu = resolve_device(settings.device, "generate.device").type == "cpu"
    limits = limits_of(args, on_gpu=not on_cpu)
    threads = None  # the process's default
    if on_cpu and limits.concurrency > 1:  # the renders at once share the cores
        threads = max(1, available_cpus() // limits.concurrency)
        torch.set_num_threads(threads)
    choices = list_models(model_dir, Path.cwd(), f"{params.evaluate.out_dir}/metrics.json")
    out_dir = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="flowjam-studio-"))
    studio = Studio(settings, choices, limits, out_dir, threads)
    studio.engine(choices[0].key)  # load now: a broken model stops here, not at the first request
    log.info(
        "%d model(s); %d render(s) at once, %d waiting at most, clips up to %g s; takes in %s",
        len(choices),
        limits.concurrency,
        limits.queue_size,
        limits.max_seconds,
        out_dir,
    )
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        allowed_paths=[str(out_dir.resolve())],
        max_file_size="200mb",
        footer_links=["api"],
        show_error=False,
    )


if __name__ == "__main__":
    run_main("studio", main, extra=(CudaScanUnavailableError,))
