"""The velocity network: Mamba mixer with mamba_ssm's names (``mamba``), the pure-PyTorch, CUDA and Triton selective
scans (``scan``, ``scan_cuda``, ``scan_triton``), mamba_ssm's fused path (``scan_fused``), the backends' device
probes (``scan_probe``), the length-aware bidirectional wrapper (``bimamba``), timestep/adaLN/cross-attention
conditioning (``conditioning``) and the 24-block backbone (``backbone``).

May import: nothing else from flowjam (torch only). Used by flow (trained-model loading), training and benchmarks.
"""
