"""Size limits of the kernels, defined once and imported by every layer that checks them."""

# Largest state size N of the selective scan and its step (the CPU kernels' per-task buffers
# are sized for it; Triton tiles pad N to a power of two up to it).
SCAN_MAX_STATE = 256

# Largest d_state of the linear time-invariant SSM layers (S4D, S4, companion): their step
# and final state use (d_model, N, N) dense transitions.
LTI_MAX_STATE = 4096

# Most rows for cpu_step.linear_cpu (a language model's head at generation): measured at
# mamba-130m's head, it beats torch's GEMM up to 8 rows and ties at 16.
LINEAR_MAX_ROWS = 16
