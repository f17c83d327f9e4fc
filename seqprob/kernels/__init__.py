"""Scan and HMM kernels: reference (readable oracle), CPU (fused) and GPU (Triton); no nn.Module."""
