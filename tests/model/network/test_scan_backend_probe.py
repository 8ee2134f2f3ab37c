"""Backend choice: `auto` picks the CUDA kernel only after a real call succeeded; explicit `cuda` and `triton` never
fall back, and say what to install or set."""

import logging
import sys

import pytest
import torch

from model.network import scan_cuda, scan_triton
from model.network.mamba import Mamba, choose_scan_backend
from model.network.scan import selective_scan

CUDA0 = torch.device("cuda", 0)  # a device object needs no GPU; the fake probes never touch it


def probe(ok, reason="fake"):
    calls = []

    def fake(device):
        calls.append(device)
        return ok, reason

    fake.calls = calls
    return fake


def test_torch_is_chosen_without_probing():
    fake = probe(True)
    assert choose_scan_backend("torch", CUDA0, fake)[0] == "torch"
    assert choose_scan_backend("auto", torch.device("cpu"), fake)[0] == "torch"
    assert fake.calls == []


def test_auto_uses_cuda_only_when_the_probe_succeeds():
    assert choose_scan_backend("auto", CUDA0, probe(True))[0] == "cuda"
    backend, reason = choose_scan_backend("auto", CUDA0, probe(False, "no selective_scan_cuda"))
    assert backend == "torch" and "no selective_scan_cuda" in reason and "cuda` extra" in reason


def test_explicit_cuda_fails_with_what_to_install():
    with pytest.raises(
        scan_cuda.CudaScanUnavailableError, match=r"no kernel image.*install the `cuda` extra"
    ):
        choose_scan_backend("cuda", CUDA0, probe(False, "no kernel image"))
    with pytest.raises(ValueError, match="got input on cpu"):
        choose_scan_backend("cuda", torch.device("cpu"), probe(True))
    assert choose_scan_backend("cuda", CUDA0, probe(True))[0] == "cuda"


@pytest.fixture
def fresh_probe(monkeypatch):
    monkeypatch.setattr(scan_cuda, "_probe_results", {})


def _install_kernel(monkeypatch, kernel, reason=""):
    monkeypatch.setattr(scan_cuda, "_import_selective_scan_fn", lambda: (kernel, reason))


def test_probe_makes_one_real_call_per_process_and_logs_it(monkeypatch, fresh_probe, caplog):
    calls = []

    def working(*args, **kwargs):
        calls.append(1)
        return selective_scan(*args, **kwargs)

    _install_kernel(monkeypatch, working)
    with caplog.at_level(logging.INFO, logger="model.network.scan_cuda"):
        for _ in range(3):
            assert scan_cuda.probe_cuda_scan("cpu")[0]
    assert len(calls) == 1
    assert sum("usable" in r.getMessage() for r in caplog.records) == 1


def test_probe_rejects_an_import_that_cannot_run(monkeypatch, fresh_probe):
    # newer mamba_ssm imports without the compiled extension and fails on the first call
    def missing_extension(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'fwd'")

    _install_kernel(monkeypatch, missing_extension)
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "AttributeError" in reason and "'fwd'" in reason
    with pytest.raises(scan_cuda.CudaScanUnavailableError, match="pip install -e '.\\[cuda\\]'"):
        scan_cuda.require_cuda_scan_on("cpu")


def test_probe_rejects_a_wrong_result_and_a_failed_import(monkeypatch, fresh_probe):
    _install_kernel(monkeypatch, lambda *a, **k: 2.0 * selective_scan(*a, **k))
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "disagrees with the torch scan" in reason
    monkeypatch.setattr(scan_cuda, "_probe_results", {})
    _install_kernel(monkeypatch, None, "ModuleNotFoundError: No module named 'mamba_ssm'")
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "does not import" in reason and "mamba_ssm" in reason


def test_triton_runs_off_cuda_only_in_the_interpreter_and_auto_never_picks_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"TRITON_INTERPRET=1.*model.scan_backend"):
        choose_scan_backend("triton", cpu, probe(True))
    assert choose_scan_backend("triton", CUDA0, probe(False))[0] == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert choose_scan_backend("triton", cpu, probe(True))[0] == "triton"
    assert choose_scan_backend("auto", cpu, probe(True))[0] == "torch"
    assert choose_scan_backend("auto", CUDA0, probe(False))[0] == "torch"


def test_import_guard_without_triton(monkeypatch):
    # scan_triton imports; its kernel module does not, and the reason is kept for the error
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "model.network.scan_triton_kernels", raising=False)
    monkeypatch.delattr(
        sys.modules["model.network"], "scan_triton_kernels", raising=False
    )  # if imported before
    kernels, reason = scan_triton._import_kernels.__wrapped__()
    assert kernels is None and "triton" in reason


def test_triton_backend_without_triton_says_what_to_install(monkeypatch):
    monkeypatch.setattr(
        scan_triton, "_import_kernels", lambda: (None, "ModuleNotFoundError: no module triton")
    )
    with pytest.raises(
        scan_triton.TritonScanUnavailableError, match=r"no module triton.*pip install '\.\[gpu\]'"
    ):
        Mamba(16, scan_backend="triton")
    u = torch.randn(1, 2, 3)
    with pytest.raises(scan_triton.TritonScanUnavailableError, match=r"model.scan_backend"):
        scan_triton.selective_scan_triton(u, u, -torch.ones(2, 1), torch.ones(1, 1, 3), torch.ones(1, 1, 3))
