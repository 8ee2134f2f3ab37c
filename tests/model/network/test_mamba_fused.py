"""mamba_ssm's fused path (``mamba_inner_fn``) through a CPU stand-in at the same seam: its probe, its contract in
fp32 and under bf16 autocast, equality with the unfused path, the fallbacks (with their reasons), and parameters
and exported weights that do not depend on the path."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from model.data.stats import Standardiser
from model.flow.trained import export_trained, load_trained
from model.network import scan_fused
from model.network.backbone import VelocityNet
from model.network.mamba import Mamba
from tests.defaults import net_config
from tests.model.network.fused_contract import install_fused_stand_in
from tests.model.network.test_mamba import MAMBA_SSM_SHAPES

BF16 = torch.bfloat16


def _perturbed_mixer(**kwargs) -> Mamba:
    torch.manual_seed(0)
    mixer = Mamba(16, d_state=4, **kwargs)
    with torch.no_grad():  # off the initialisation, so every weight matters
        for param in mixer.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return mixer


def _run(mixer: Mamba, x: torch.Tensor, autocast: bool = False):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=BF16, enabled=autocast):
        out = mixer(x)
    out.float().square().mean().backward()
    grads = {name: p.grad.clone() for name, p in mixer.named_parameters()}
    mixer.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("mode", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_fused_probe_calls_it_in_fp32_and_under_bf16_autocast_whatever_the_callers_mode(monkeypatch, mode):
    stand_in = install_fused_stand_in(monkeypatch)
    with mode():
        usable, reason = scan_fused.probe_fused("cpu")
    assert usable, reason
    assert stand_in.calls == 2 and stand_in.backward_calls == 2


def test_probe_rejects_a_fused_function_that_disagrees(monkeypatch):
    stand_in = install_fused_stand_in(monkeypatch)
    monkeypatch.setattr(
        scan_fused, "_import_mamba_inner_fn", lambda: (lambda *a, **k: 1.5 * stand_in(*a, **k), "")
    )
    usable, reason = scan_fused.probe_fused("cpu")
    assert not usable and "mamba_inner_fn disagrees" in reason
    assert "mamba_inner_fn disagrees" in scan_fused.fused_problem(4, "cpu")


def test_fused_path_equals_the_unfused_path_in_fp32(monkeypatch):
    x = torch.randn(2, 19, 16)
    want = _run(_perturbed_mixer(scan_backend="torch"), x)
    stand_in = install_fused_stand_in(monkeypatch)
    mixer = _perturbed_mixer(scan_backend="auto")
    assert mixer.resolve_scan(torch.device("cpu")).label == "cuda-fused"
    got = _run(mixer, x)
    assert stand_in.calls == 2 + 1 and stand_in.backward_calls == 2 + 1  # probe (fp32, bf16) + the forward
    assert stand_in.unfused.calls == 0
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert got[2].keys() == want[2].keys() == MAMBA_SSM_SHAPES.keys()
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_path_under_bf16_autocast_meets_the_contracts(monkeypatch):
    x = torch.randn(2, 19, 16)
    want = _run(_perturbed_mixer(scan_backend="torch"), x, autocast=True)
    install_fused_stand_in(monkeypatch)
    got = _run(_perturbed_mixer(scan_backend="auto"), x, autocast=True)
    assert got[0].dtype == BF16 and all(torch.isfinite(g).all() for g in got[2].values())
    scale = want[0].float().abs().max()
    assert (got[0].float() - want[0].float()).abs().max() <= 3e-2 * scale


def test_fallback_to_the_unfused_kernel_when_torch_lacks_the_autocast_api(monkeypatch):
    stand_in = install_fused_stand_in(monkeypatch)
    monkeypatch.delattr(torch, "get_autocast_gpu_dtype")
    mixer = _perturbed_mixer(scan_backend="auto")
    choice = mixer.resolve_scan(torch.device("cpu"))
    assert not choice.fused and choice.label == "cuda" and "get_autocast_gpu_dtype" in choice.reason
    _run(mixer, torch.randn(1, 7, 16))
    assert stand_in.calls == 0 and stand_in.unfused.calls == 1


def test_fallback_for_a_conv_width_causal_conv1d_refuses(monkeypatch):
    install_fused_stand_in(monkeypatch)
    choice = Mamba(16, d_state=4, d_conv=5, scan_backend="auto").resolve_scan(torch.device("cpu"))
    assert not choice.fused and "d_conv=5" in choice.reason


def test_params_and_exported_weights_do_not_depend_on_the_path(monkeypatch, tmp_path):
    cfg = net_config(latent_dim=4, text_dim=8, hidden=16, depth=2, d_state=4, d_conv=4, expand=2)
    x, t = torch.randn(2, 4, 11), torch.rand(2)
    text, text_mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False

    def one_step(backend: str, out_dir):
        torch.manual_seed(0)
        net = VelocityNet(dataclasses.replace(cfg, scan_backend=backend))
        with torch.no_grad():  # open the zero-init gates so the mixers get gradients
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(x, t, text, text_mask, mask).square().mean().backward()
        opt.step()
        stats = Standardiser((0.0,) * 4, (1.0,) * 4)
        export_trained(out_dir, net.state_dict(), net.cfg.to_dict(), {}, {}, stats, 1)
        return net.state_dict()

    unfused = one_step("torch", tmp_path / "unfused")
    stand_in = install_fused_stand_in(monkeypatch)
    fused = one_step("auto", tmp_path / "fused")
    assert stand_in.calls >= 2 * cfg.depth  # every mixer of the step went through mamba_inner_fn
    assert fused.keys() == unfused.keys()
    for name in unfused:
        assert fused[name].shape == unfused[name].shape and fused[name].dtype == unfused[name].dtype
        torch.testing.assert_close(fused[name], unfused[name], rtol=1e-4, atol=1e-6, msg=name)
    files = {k: load_file(tmp_path / k / "model.safetensors") for k in ("fused", "unfused")}
    assert files["fused"].keys() == files["unfused"].keys()
    assert {k: v.shape for k, v in files["fused"].items()} == {
        k: v.shape for k, v in files["unfused"].items()
    }
    # weights trained on the fused path load for the unfused path (here: the torch scan on CPU)
    assert load_trained(tmp_path / "fused", scan_backend="torch").net is not None


def _fused_ready() -> bool:
    return torch.cuda.is_available() and scan_fused._import_mamba_inner_fn()[0] is not None


@pytest.mark.cuda
@pytest.mark.skipif(not _fused_ready(), reason="needs a CUDA device, mamba_ssm and causal-conv1d")
@pytest.mark.parametrize("autocast,tol", [(False, 1e-4), (True, 3e-2)])
def test_real_fused_path_matches_the_torch_path_on_cuda(autocast, tol):
    assert scan_fused.fused_problem(4, "cuda") == ""
    mixers = [_perturbed_mixer(scan_backend=b, device="cuda") for b in ("cuda", "torch")]
    assert mixers[0].resolve_scan(torch.device("cuda")).fused
    x = torch.randn(2, 200, 16, device="cuda")
    with torch.autocast("cuda", dtype=BF16, enabled=autocast):
        fused, plain = (_run(m, x) for m in mixers)
    scale = plain[0].float().abs().max()
    assert (fused[0].float() - plain[0].float()).abs().max() <= tol * scale
    for name in plain[2]:
        ref = plain[2][name].float()
        assert (fused[2][name].float() - ref).abs().max() <= tol * (ref.abs().max() + 1e-6), name
