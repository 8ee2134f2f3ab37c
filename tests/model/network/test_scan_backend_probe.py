"""Backend choice: `auto` on a CUDA device tries mamba_ssm's kernel, then Triton, then torch, each only after a real
call passed; the probes' verdicts do not depend on the caller's grad mode or autocast; explicit `cuda` and `triton`
never fall back; a CUDA device on anything but the fused path is logged at WARNING."""

import logging
import sys

import pytest
import torch

import model.network.mamba as mamba_module
from model.network import scan_cuda, scan_fused, scan_triton
from model.network.mamba import Mamba, ScanChoice, choose_scan_backend, scan_choice
from model.network.scan import selective_scan
from tests.model.network.kernel_contract import ContractCheckingScan

CUDA0 = torch.device("cuda", 0)  # a device object needs no GPU; the fake probes never touch it
CPU = torch.device("cpu")


def probe(ok, reason="fake"):
    calls = []

    def fake(device):
        calls.append(device)
        return ok, reason

    fake.calls = calls
    return fake


def probes(cuda, triton):
    return {"cuda": cuda, "triton": triton}


def test_torch_is_chosen_without_probing():
    cuda, triton = probe(True), probe(True)
    assert choose_scan_backend("torch", CUDA0, probes(cuda, triton))[0] == "torch"
    assert choose_scan_backend("auto", CPU, probes(cuda, triton))[0] == "torch"
    assert cuda.calls == triton.calls == []


def test_auto_on_cuda_tries_mamba_ssm_then_triton_then_torch():
    cuda, triton = probe(True), probe(True)
    assert choose_scan_backend("auto", CUDA0, probes(cuda, triton))[0] == "cuda"
    assert triton.calls == []  # not probed when mamba_ssm's kernel passed
    backend, reason = choose_scan_backend(
        "auto", CUDA0, probes(probe(False, "no selective_scan_cuda"), triton)
    )
    assert backend == "triton" and "no selective_scan_cuda" in reason and "make gpu-env" in reason
    backend, reason = choose_scan_backend(
        "auto", CUDA0, probes(probe(False, "no selective_scan_cuda"), probe(False, "no ptxas"))
    )
    assert backend == "torch" and "no selective_scan_cuda" in reason and "no ptxas" in reason


def test_explicit_cuda_fails_with_what_to_install():
    with pytest.raises(scan_cuda.CudaScanUnavailableError, match=r"no kernel image.*make gpu-env"):
        choose_scan_backend("cuda", CUDA0, probes(probe(False, "no kernel image"), probe(True)))
    with pytest.raises(ValueError, match="got input on cpu"):
        choose_scan_backend("cuda", CPU, probes(probe(True), probe(True)))
    assert choose_scan_backend("cuda", CUDA0, probes(probe(True), probe(True)))[0] == "cuda"


def test_explicit_triton_runs_where_its_probe_passes_and_never_falls_back(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"TRITON_INTERPRET=1.*model.scan_backend"):
        choose_scan_backend("triton", CPU, probes(probe(True), probe(True)))
    assert choose_scan_backend("triton", CUDA0, probes(probe(False), probe(True)))[0] == "triton"
    with pytest.raises(scan_triton.TritonScanUnavailableError, match=r"no ptxas.*pip install '\.\[gpu\]'"):
        choose_scan_backend("triton", CUDA0, probes(probe(True), probe(False, "no ptxas")))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert choose_scan_backend("triton", CPU, probes(probe(True), probe(True)))[0] == "triton"
    assert choose_scan_backend("auto", CPU, probes(probe(True), probe(True)))[0] == "torch"


@pytest.fixture
def fresh_probes(monkeypatch):
    for module in (scan_cuda, scan_triton, scan_fused):
        monkeypatch.setattr(module, "_probe_results", {})
    monkeypatch.setattr(scan_fused, "_problems", {})


def _install_kernel(monkeypatch, kernel, reason=""):
    monkeypatch.setattr(scan_cuda, "_import_selective_scan_fn", lambda: (kernel, reason))


def test_probe_makes_one_real_call_per_process_and_logs_it(monkeypatch, fresh_probes, caplog):
    calls = []

    def working(*args, **kwargs):
        calls.append(1)
        return selective_scan(*args, **kwargs)

    _install_kernel(monkeypatch, working)
    with caplog.at_level(logging.INFO, logger="model.network.scan_probe"):
        for _ in range(3):
            assert scan_cuda.probe_cuda_scan("cpu")[0]
    assert len(calls) == 1
    assert sum("usable" in r.getMessage() for r in caplog.records) == 1


MODES = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "bf16_autocast": lambda: torch.autocast(
        "cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16
    ),
}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_probe_verdict_does_not_depend_on_the_callers_modes(monkeypatch, fresh_probes, mode):
    # generation makes its first forward under no_grad / inference_mode, training under autocast: the probe
    # inside that forward must still run its backward, in fp32, and find the kernel usable
    stand_in = ContractCheckingScan()
    _install_kernel(monkeypatch, stand_in)
    with mode():
        usable, reason = scan_cuda.probe_cuda_scan("cpu")
        assert not torch.is_grad_enabled() or mode is MODES["bf16_autocast"]  # the caller's mode is back
    assert usable, reason
    assert stand_in.calls == 1 and stand_in.backward_calls == 1


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_triton_probe_runs_its_kernels_whatever_the_callers_modes(fresh_probes, mode):
    device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: Triton's interpreter (tests/conftest.py)
    if device == "cpu":
        assert scan_triton.interpreter_requested()
    with mode():
        usable, reason = scan_triton.probe_triton_scan(device)
    assert usable, reason
    assert "matched the torch scan" in reason


def test_probe_rejects_an_import_that_cannot_run(monkeypatch, fresh_probes):
    # newer mamba_ssm imports without the compiled extension and fails on the first call
    def missing_extension(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'fwd'")

    _install_kernel(monkeypatch, missing_extension)
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "AttributeError" in reason and "'fwd'" in reason
    with pytest.raises(scan_cuda.CudaScanUnavailableError, match=r"--no-build-isolation -e '\.\[cuda\]'"):
        scan_cuda.require_cuda_scan_on("cpu")


def test_probe_rejects_a_wrong_result_and_a_failed_import(monkeypatch, fresh_probes):
    _install_kernel(monkeypatch, lambda *a, **k: 2.0 * selective_scan(*a, **k))
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "disagrees with the torch scan" in reason
    monkeypatch.setattr(scan_cuda, "_probe_results", {})
    _install_kernel(monkeypatch, None, "ModuleNotFoundError: No module named 'mamba_ssm'")
    usable, reason = scan_cuda.probe_cuda_scan("cpu")
    assert not usable and "does not import" in reason and "mamba_ssm" in reason


@pytest.fixture
def fresh_log(monkeypatch):
    monkeypatch.setattr(mamba_module, "_logged_choices", set())


def test_a_cuda_device_off_the_fused_path_is_logged_at_warning_once(monkeypatch, fresh_log, caplog):
    monkeypatch.setattr(mamba_module, "choose_scan_backend", lambda r, d, p=None: ("triton", "no mamba_ssm"))
    mixer = Mamba(16, d_state=4, scan_backend="auto")
    with caplog.at_level(logging.INFO, logger="model.network.mamba"):
        for _ in range(3):
            choice = mixer.resolve_scan(CUDA0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the triton selective scan runs on cuda:0" in warnings[0].getMessage()
    assert "no mamba_ssm" in warnings[0].getMessage()
    assert choice == ScanChoice("auto", "triton", False, "no mamba_ssm") and choice.label == "triton"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.network.mamba"):
        mamba_module._log_choice_once(ScanChoice("torch", "torch", False, "model.scan_backend is torch"), CPU)
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # CPU: torch is all there is


def test_the_fused_path_is_chosen_on_cuda_only_when_usable(monkeypatch, fresh_log, caplog):
    monkeypatch.setattr(mamba_module, "choose_scan_backend", lambda r, d, p=None: ("cuda", "probe passed"))
    monkeypatch.setattr(scan_fused, "fused_problem", lambda d_conv, device: "")
    with caplog.at_level(logging.INFO, logger="model.network.mamba"):
        choice = Mamba(16, scan_backend="auto").resolve_scan(CUDA0)
    assert choice.fused and choice.label == "cuda-fused"
    assert all(r.levelno == logging.INFO for r in caplog.records)
    monkeypatch.setattr(scan_fused, "fused_problem", lambda d_conv, device: "causal-conv1d does not import")
    with caplog.at_level(logging.INFO, logger="model.network.mamba"):
        choice = Mamba(16, scan_backend="auto").resolve_scan(CUDA0)
    assert not choice.fused and choice.label == "cuda" and "causal-conv1d" in choice.reason
    assert any(r.levelno == logging.WARNING and "causal-conv1d" in r.getMessage() for r in caplog.records)


def test_scan_choice_of_a_network_is_what_its_mixers_run():
    from model.network.backbone import VelocityNet
    from tests.defaults import net_config

    net = VelocityNet(net_config(latent_dim=4, text_dim=8, hidden=16, depth=2, scan_backend="auto"))
    choice = scan_choice(net, "cpu")
    assert choice.as_dict() == {
        "requested": "auto",
        "backend": "torch",
        "reason": "input is not on a CUDA device",
    }
    assert scan_choice(torch.nn.Linear(2, 2), "cpu") is None


def test_import_guard_without_triton(monkeypatch):
    # scan_triton imports; its kernel module does not, and the reason is kept for the error
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "model.network.scan_triton_kernels", raising=False)
    monkeypatch.delattr(
        sys.modules["model.network"], "scan_triton_kernels", raising=False
    )  # if imported before
    kernels, reason = scan_triton._import_kernels.__wrapped__()
    assert kernels is None and "triton" in reason


def test_triton_backend_without_triton_says_what_to_install(monkeypatch, fresh_probes):
    monkeypatch.setattr(
        scan_triton, "_import_kernels", lambda: (None, "ModuleNotFoundError: no module triton")
    )
    with pytest.raises(
        scan_triton.TritonScanUnavailableError, match=r"no module triton.*pip install '\.\[gpu\]'"
    ):
        Mamba(16, scan_backend="triton")
    assert scan_triton.probe_triton_scan("cpu") == (
        False,
        "triton does not import (ModuleNotFoundError: no module triton)",
    )
    u = torch.randn(1, 2, 3)
    with pytest.raises(scan_triton.TritonScanUnavailableError, match=r"model.scan_backend"):
        scan_triton.selective_scan_triton(u, u, -torch.ones(2, 1), torch.ones(1, 1, 3), torch.ones(1, 1, 3))
