"""Triton kernels for the scans in ``seqprob.kernels.triton_scan`` (see there for the scheme).

Importing this module imports Triton and defines the kernels; only ``triton_scan`` and
``triton_step`` (the single-token step, see there) import it, inside their functions, so Triton
stays optional (``seqprob[gpu]``). Under ``TRITON_INTERPRET=1`` (set before this import) the
kernels run in Triton's CPU interpreter.
"""

import triton
import triton.language as tl


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))

@triton.jit
def _tile(ptr, b, t, offs_d, offs_n, mask, sb, sd, sn, st):
    """(BLOCK_D, BLOCK_N) tile of B or C at step t; strides make fixed (dim, N) and
    time-varying (batch, N, L) layouts one code path (unused axes have stride 0)."""
    return tl.load(ptr + b * sb + offs_d[:, None] * sd + offs_n[None, :] * sn + t * st,
                   mask=mask, other=0.0)

@triton.jit
def selective_fwd(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, h0_ptr,
                  out_ptr, last_ptr, ckpt_ptr, dim, length, nstate,
                  sbb, sbd, sbn, sbt, scb, scd, scn, sct,
                  HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE: tl.constexpr,
                  CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask = mask_d[:, None] & (offs_n[None, :] < nstate)
    tile = offs_d[:, None] * nstate + offs_n[None, :]                  # (BD BN) in (dim, N)
    state = (b * dim + offs_d[:, None]) * nstate + offs_n[None, :]      # in (batch, dim, N)
    a = tl.load(a_ptr + tile, mask=mask, other=0.0)
    x = tl.load(h0_ptr + state, mask=mask, other=0.0)
    dskip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0)
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0)
    row = (b * dim + offs_d) * length                                   # (BD)
    for t in range(length):
        if SAVE:
            if t % CHUNK == 0:
                ck = ((b * dim + offs_d[:, None]) * tl.cdiv(length, CHUNK) + t // CHUNK)
                tl.store(ckpt_ptr + ck * nstate + offs_n[None, :], x, mask=mask)
        ut = tl.load(u_ptr + row + t, mask=mask_d, other=0.0)
        dt = tl.load(delta_ptr + row + t, mask=mask_d, other=0.0) + bias
        if SOFTPLUS:
            dt = _softplus(dt)
        bt = _tile(b_ptr, b, t, offs_d, offs_n, mask, sbb, sbd, sbn, sbt)
        ct = _tile(c_ptr, b, t, offs_d, offs_n, mask, scb, scd, scn, sct)
        x = tl.exp(dt[:, None] * a) * x + (dt * ut)[:, None] * bt
        y = tl.sum(x * ct, axis=1) + dskip * ut
        if HAS_Z:
            zt = tl.load(z_ptr + row + t, mask=mask_d, other=0.0)
            y *= zt * tl.sigmoid(zt)
        tl.store(out_ptr + row + t, y, mask=mask_d)
    tl.store(last_ptr + state, x, mask=mask)

@triton.jit
def selective_bwd(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, ckpt_ptr,
                  scratch_ptr, dout_ptr, dlast_ptr, du_ptr, ddelta_ptr, da_ptr, db_ptr,
                  dc_ptr, dd_ptr, dz_ptr, dbias_ptr, dh0_ptr, dim, length, nstate,
                  sbb, sbd, sbn, sbt, scb, scd, scn, sct,
                  HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr, B_VAR: tl.constexpr,
                  C_VAR: tl.constexpr,
                  CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < nstate
    mask = mask_d[:, None] & mask_n[None, :]
    tile = offs_d[:, None] * nstate + offs_n[None, :]
    state = (b * dim + offs_d[:, None]) * nstate + offs_n[None, :]
    slab = (b * dim + offs_d[:, None]) * (CHUNK + 1) * nstate + offs_n[None, :]
    a = tl.load(a_ptr + tile, mask=mask, other=0.0)
    lam = tl.load(dlast_ptr + state, mask=mask, other=0.0)               # adjoint of x_t
    da_acc = tl.zeros_like(a)
    db_acc = tl.zeros_like(a)
    dc_acc = tl.zeros_like(a)
    dskip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0)
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0)
    dd_acc = tl.zeros([BLOCK_D], dtype=a.dtype)
    dbias_acc = tl.zeros([BLOCK_D], dtype=a.dtype)
    row = (b * dim + offs_d) * length
    nchunk = tl.cdiv(length, CHUNK)
    for ci in range(nchunk):
        c = nchunk - 1 - ci
        t0 = c * CHUNK
        ck = (b * dim + offs_d[:, None]) * nchunk + c
        x = tl.load(ckpt_ptr + ck * nstate + offs_n[None, :], mask=mask, other=0.0)
        tl.store(scratch_ptr + slab, x, mask=mask)
        for j in range(CHUNK):
            t = t0 + j
            if t < length:
                dt = tl.load(delta_ptr + row + t, mask=mask_d, other=0.0) + bias
                if SOFTPLUS:
                    dt = _softplus(dt)
                ut = tl.load(u_ptr + row + t, mask=mask_d, other=0.0)
                bt = _tile(b_ptr, b, t, offs_d, offs_n, mask, sbb, sbd, sbn, sbt)
                x = tl.exp(dt[:, None] * a) * x + (dt * ut)[:, None] * bt
                tl.store(scratch_ptr + slab + (j + 1) * nstate, x, mask=mask)
        for jj in range(CHUNK):
            j = CHUNK - 1 - jj
            t = t0 + j
            if t < length:
                raw = tl.load(delta_ptr + row + t, mask=mask_d, other=0.0) + bias
                dt = _softplus(raw) if SOFTPLUS else raw
                ut = tl.load(u_ptr + row + t, mask=mask_d, other=0.0)
                bt = _tile(b_ptr, b, t, offs_d, offs_n, mask, sbb, sbd, sbn, sbt)
                ct = _tile(c_ptr, b, t, offs_d, offs_n, mask, scb, scd, scn, sct)
                x_t = tl.load(scratch_ptr + slab + (j + 1) * nstate, mask=mask, other=0.0)
                x_prev = tl.load(scratch_ptr + slab + j * nstate, mask=mask, other=0.0)
                gy = tl.load(dout_ptr + row + t, mask=mask_d, other=0.0)
                if HAS_Z:
                    zt = tl.load(z_ptr + row + t, mask=mask_d, other=0.0)
                    sig = tl.sigmoid(zt)
                    ypre = tl.sum(x_t * ct, axis=1) + dskip * ut
                    tl.store(dz_ptr + row + t, gy * ypre * sig * (1.0 + zt * (1.0 - sig)),
                             mask=mask_d)
                    gy = gy * zt * sig
                e = tl.exp(dt[:, None] * a)
                lam = lam + gy[:, None] * ct
                gexp = lam * x_prev * e
                lam_b = tl.sum(lam * bt, axis=1)
                ddt = tl.sum(gexp * a, axis=1) + lam_b * ut
                du = lam_b * dt + gy * dskip
                dd_acc += gy * ut
                da_acc += gexp * dt[:, None]
                gb = lam * (dt * ut)[:, None]
                gc = gy[:, None] * x_t
                if B_VAR:
                    tl.atomic_add(db_ptr + b * sbb + offs_n * sbn + t * sbt,
                                  tl.sum(gb, axis=0), mask=mask_n)
                else:
                    db_acc += gb
                if C_VAR:
                    tl.atomic_add(dc_ptr + b * scb + offs_n * scn + t * sct,
                                  tl.sum(gc, axis=0), mask=mask_n)
                else:
                    dc_acc += gc
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                dbias_acc += ddt
                tl.store(du_ptr + row + t, du, mask=mask_d)
                tl.store(ddelta_ptr + row + t, ddt, mask=mask_d)
                lam = lam * e
    tl.store(dh0_ptr + state, lam, mask=mask)
    tl.atomic_add(da_ptr + tile, da_acc, mask=mask)
    if not B_VAR:
        tl.atomic_add(db_ptr + tile, db_acc, mask=mask)
    if not C_VAR:
        tl.atomic_add(dc_ptr + tile, dc_acc, mask=mask)
    tl.atomic_add(dd_ptr + offs_d, dd_acc, mask=mask_d)
    tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d)

@triton.jit
def linear_fwd(a_ptr, b_ptr, h0_ptr, out_ptr, length, nfeat, BLOCK: tl.constexpr):
    i = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < nfeat
    h = tl.load(h0_ptr + i * nfeat + offs, mask=mask, other=0.0)
    base = i * length * nfeat + offs
    for t in range(length):
        h = tl.load(a_ptr + base + t * nfeat, mask=mask) * h + tl.load(
            b_ptr + base + t * nfeat, mask=mask)
        tl.store(out_ptr + base + t * nfeat, h, mask=mask)

@triton.jit
def linear_bwd(a_ptr, h0_ptr, out_ptr, gout_ptr, da_ptr, db_ptr, dh0_ptr, length, nfeat,
               BLOCK: tl.constexpr):
    i = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < nfeat
    base = i * length * nfeat + offs
    lam = tl.zeros([BLOCK], dtype=a_ptr.dtype.element_ty)
    for tt in range(length):
        t = length - 1 - tt
        lam += tl.load(gout_ptr + base + t * nfeat, mask=mask, other=0.0)
        tl.store(db_ptr + base + t * nfeat, lam, mask=mask)
        if t > 0:
            prev = tl.load(out_ptr + base + (t - 1) * nfeat, mask=mask, other=0.0)
        else:
            prev = tl.load(h0_ptr + i * nfeat + offs, mask=mask, other=0.0)
        tl.store(da_ptr + base + t * nfeat, lam * prev, mask=mask)
        lam = lam * tl.load(a_ptr + base + t * nfeat, mask=mask, other=0.0)
    tl.store(dh0_ptr + i * nfeat + offs, lam, mask=mask)

@triton.jit
def selective_step(state_ptr, x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr,
                   out_ptr, dim, nstate, s_b, s_d, s_n,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SOFTPLUS: tl.constexpr, FP64: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d, mask_n = offs_d < dim, offs_n < nstate
    mask = mask_d[:, None] & mask_n[None, :]
    row = b * dim + offs_d                                              # (BD) in (batch, dim)
    tile = state_ptr + b * s_b + offs_d[:, None] * s_d + offs_n[None, :] * s_n
    if FP64:
        h = tl.load(tile, mask=mask, other=0.0).to(tl.float64)          # (BD BN)
    else:
        h = tl.load(tile, mask=mask, other=0.0).to(tl.float32)
    wide = h.dtype
    x = tl.load(x_ptr + row, mask=mask_d, other=0.0).to(wide)           # (BD)
    dt = tl.load(dt_ptr + row, mask=mask_d, other=0.0).to(wide)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(wide)
    if SOFTPLUS:
        dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))))
    a = tl.load(a_ptr + offs_d[:, None] * nstate + offs_n[None, :], mask=mask,
                other=0.0).to(wide)
    bt = tl.load(b_ptr + b * nstate + offs_n, mask=mask_n, other=0.0).to(wide)  # (BN)
    ct = tl.load(c_ptr + b * nstate + offs_n, mask=mask_n, other=0.0).to(wide)
    h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
    tl.store(tile, h, mask=mask)
    y = tl.sum(h * ct[None, :], axis=1)                                 # (BD)
    if HAS_D:
        y += tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(wide) * x
    if HAS_Z:
        z = tl.load(z_ptr + row, mask=mask_d, other=0.0).to(wide)
        y *= z * tl.sigmoid(z)
    tl.store(out_ptr + row, y, mask=mask_d)
