"""A bounded load test on loopback: 8 requests at once through ``gradio_client`` against the studio server (one
render at a time): all finish, in the order they joined the queue, and the server's memory stays bounded."""

from __future__ import annotations

import re
import time

import soundfile as sf

from tests.memory import AnonPeak, status_mib

N_REQUESTS = 8
LONG_SECONDS, LONG_STEPS = (
    30.0,
    200,
)  # the first request renders long enough for the other 7 to queue behind it
# the server's own (anonymous) memory at its highest during the 16 requests: Python, torch, gradio, the text
# encoder, the tiny model and the renders in flight (measured 470-490 MiB; RSS, which adds the mapped libraries and
# depends on the page cache (tests/memory.py), was 770-805 MiB in a long-installed environment, 1028 in a fresh one)
PEAK_ANON_MIB = 768
GROWTH_MIB = 96  # RSS after the second 8 requests vs after the first 8 (measured: +8 to +55 MiB)


def _submit_in_order(client, first_seed: int) -> list:
    """Submit a long render, then 7 short ones, each once the one before has joined the queue: all 8 are in flight
    at once and each waits behind exactly the ones submitted before it."""
    from gradio_client.utils import Status

    jobs, ahead = [], []
    for k in range(N_REQUESTS):
        seconds, steps = (LONG_SECONDS, LONG_STEPS) if k == 0 else (10.0, 2)
        job = client.submit(
            "start",
            f"request {k}",
            "ab2",
            steps,
            1.5,
            "fixed",
            first_seed + k,
            1,
            seconds,
            api_name="/generate",
        )
        deadline = time.monotonic() + 60
        while job.status().code in (Status.STARTING, Status.JOINING_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs.append(job)
        ahead.append(job.status().rank)  # requests ahead of it in the queue when it joined (None: running)
    return jobs, ahead


def _round(client, first_seed: int) -> list[tuple]:
    started = time.monotonic()
    jobs, ahead = _submit_in_order(client, first_seed)
    joined = time.monotonic() - started
    progress = set()  # the progress bar's updates of the long render, as the page gets them
    while not jobs[0].done():
        for update in jobs[0].status().progress_data or []:
            progress.add((update.desc, update.unit, update.length))
        time.sleep(0.05)
    results = [j.result(timeout=600) for j in jobs]
    assert ("take 1 of 1: sampling", "steps", LONG_STEPS) in progress, progress
    assert ahead[1:] == list(range(N_REQUESTS - 1)), (
        f"queue positions when joining: {ahead} (in {joined:.1f} s)"
    )
    return results


def test_eight_concurrent_requests_finish_in_queue_order_with_bounded_memory(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    before = status_mib(server.pid)
    with AnonPeak(server.pid) as anon:
        results = _round(client, first_seed=100)
        after_first = status_mib(server.pid)
        results += _round(client, first_seed=200)
        after_second = status_mib(server.pid)

    numbers = []
    for k, (status, seed, _earlier, audio, _spectrogram, _download, settings, *_others) in enumerate(results):
        assert "1 take rendered" in status and seed == (100 if k < N_REQUESTS else 200 - N_REQUESTS) + k
        info = sf.info(audio)
        seconds = LONG_SECONDS if k % N_REQUESTS == 0 else 10.0
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, round(seconds * 44100))
        numbers.append(int(re.search(r"\*\*Take (\d+)\*\*", settings).group(1)))
    # the server numbers takes as it finishes them: they finished in the order they joined the queue
    assert numbers == list(range(numbers[0], numbers[0] + 2 * N_REQUESTS)), numbers

    print(
        f"studio RSS MiB: before {before['VmRSS']:.0f}, after 8 requests {after_first['VmRSS']:.0f}, "
        f"after 16 {after_second['VmRSS']:.0f}; peak {after_second['VmHWM']:.0f}; anonymous: before "
        f"{before['RssAnon']:.0f}, peak {anon.mib:.0f}"
    )
    assert anon.mib < PEAK_ANON_MIB
    assert after_second["VmRSS"] - after_first["VmRSS"] < GROWTH_MIB
