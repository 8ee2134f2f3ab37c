"""The velocity network: Mamba mixer with mamba_ssm's names (``mamba``), the pure-PyTorch and CUDA selective scans
(``scan``, ``scan_cuda``), the length-aware bidirectional wrapper (``bimamba``), timestep/adaLN/cross-attention
conditioning (``conditioning``) and the 24-block backbone (``backbone``).

May import: nothing else from flowjam (torch only). Used by flow (trained-model loading), training and benchmarks.
"""
