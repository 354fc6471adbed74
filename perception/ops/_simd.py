"""Explicit 8-wide float32 SIMD loops for Numba kernels, emitted as LLVM vector IR.

LLVM's auto-vectorizer picks its own width and interleave (for 80 channels it runs 64 in
vectors and 16 in a scalar tail) and never vectorizes a float reduction without fast-math.
These intrinsics fix the shape instead: 8 float32 lanes, channel ``q`` in lane ``q % 8``, one
multiply and one add per element (never fused into an FMA: the IR carries no ``contract``
flag), so the numpy references can reproduce every rounding:

* ``axpy1(acc, f0, d0)``: ``acc += d0 * f0``
* ``axpy4(acc, f0..f3, d0..d3)``: ``acc = (((acc + d0*f0) + d1*f1) + d2*f2) + d3*f3``
* ``dot8(a, b)``: lane ``l`` sums ``a[q] * b[q]`` for ``q = l, l+8, ...`` in order, then
  ``((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))``.
* ``segment_sumV(out, k, c0, feats, entries, dep, start, end, first)`` (V = 1..12 vectors):
  a gathered ``axpy1`` over a list of points with the accumulator row held in V registers
  for the whole list (loaded once, stored once) - per channel the same additions, in order.

For axpy1/axpy4/dot8 all arrays are 1-D C-contiguous float32 of the same length; for
segment_sum out and feats are 2-D C-contiguous float32 (the caller guarantees the bounds).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_F32 = ir.FloatType()
_V8 = ir.VectorType(_F32, 8)
_I32 = ir.IntType(32)


def _is_vec(t) -> bool:
    return (isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C"
            and t.dtype == types.float32)


def _splat(builder, x):
    v = builder.insert_element(ir.Constant(_V8, ir.Undefined), x, _I32(0))
    return builder.shuffle_vector(v, ir.Constant(_V8, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, 8), [0] * 8))


def _vptr(builder, base, q):
    return builder.bitcast(builder.gep(base, [q]), _V8.as_pointer())


def _axpy_codegen(context, builder, sig, args, k):
    arrays = [context.make_array(t)(context, builder, a)
              for t, a in zip(sig.args[: k + 1], args[: k + 1])]
    ptrs = [a.data for a in arrays[: k + 1]]
    scalars = [context.cast(builder, a, t, types.float32)
               for a, t in zip(args[k + 1:], sig.args[k + 1:])]
    splats = [_splat(builder, s) for s in scalars]
    n = builder.extract_value(arrays[0].shape, 0)
    n8 = builder.and_(n, n.type(-8))
    with cgutils.for_range_slice(builder, n.type(0), n8, n.type(8)) as (q, _):
        acc = builder.load(_vptr(builder, ptrs[0], q), align=4)
        for p, s in zip(ptrs[1:], splats):
            acc = builder.fadd(acc, builder.fmul(s, builder.load(_vptr(builder, p, q), align=4)))
        builder.store(acc, _vptr(builder, ptrs[0], q), align=4)
    with cgutils.for_range_slice(builder, n8, n, n.type(1)) as (q, _):
        acc = builder.load(builder.gep(ptrs[0], [q]))
        for p, s in zip(ptrs[1:], scalars):
            acc = builder.fadd(acc, builder.fmul(s, builder.load(builder.gep(p, [q]))))
        builder.store(acc, builder.gep(ptrs[0], [q]))
    return context.get_dummy_value()


@intrinsic
def axpy1(typingctx, acc, f0, d0):
    """``acc += d0 * f0`` elementwise, 8 lanes at a time."""
    if not (_is_vec(acc) and _is_vec(f0) and isinstance(d0, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        return _axpy_codegen(context, builder, sig, args, 1)

    return types.void(acc, f0, d0), codegen


@intrinsic
def axpy4(typingctx, acc, f0, f1, f2, f3, d0, d1, d2, d3):
    """``acc = (((acc + d0*f0) + d1*f1) + d2*f2) + d3*f3`` elementwise, 8 lanes at a time."""
    if not (all(_is_vec(a) for a in (acc, f0, f1, f2, f3))
            and all(isinstance(d, types.Float) for d in (d0, d1, d2, d3))):
        return None

    def codegen(context, builder, sig, args):
        return _axpy_codegen(context, builder, sig, args, 4)

    return types.void(acc, f0, f1, f2, f3, d0, d1, d2, d3), codegen


@intrinsic
def dot8(typingctx, a, b):
    """float32 dot product in 8 interleaved lanes, combined in a fixed tree (module doc)."""
    if not (_is_vec(a) and _is_vec(b)):
        return None

    def codegen(context, builder, sig, args):
        aa, bb = (context.make_array(t)(context, builder, x) for t, x in zip(sig.args, args))
        pa, pb = aa.data, bb.data
        n = builder.extract_value(aa.shape, 0)
        n8 = builder.and_(n, n.type(-8))
        lanes = cgutils.alloca_once_value(builder, ir.Constant(_V8, [0.0] * 8))
        with cgutils.for_range_slice(builder, n.type(0), n8, n.type(8)) as (q, _):
            prod = builder.fmul(builder.load(_vptr(builder, pa, q), align=4),
                                builder.load(_vptr(builder, pb, q), align=4))
            builder.store(builder.fadd(builder.load(lanes), prod), lanes)
        with cgutils.for_range_slice(builder, n8, n, n.type(1)) as (q, _):
            lane = builder.trunc(builder.sub(q, n8), _I32)
            vec = builder.load(lanes)
            prod = builder.fmul(builder.load(builder.gep(pa, [q])),
                                builder.load(builder.gep(pb, [q])))
            val = builder.fadd(builder.extract_element(vec, lane), prod)
            builder.store(builder.insert_element(vec, val, lane), lanes)
        vec = builder.load(lanes)
        lane = [builder.extract_element(vec, _I32(i)) for i in range(8)]
        add = builder.fadd
        return add(add(add(lane[0], lane[4]), add(lane[2], lane[6])),
                   add(add(lane[1], lane[5]), add(lane[3], lane[7])))

    return types.float32(a, b), codegen


# Entries ahead whose depth value segment_sum prefetches (measured: 8-16 about 10% faster
# than none; feature rows are not worth prefetching, they are mostly in L1/L2 already).
SEGMENT_PREFETCH = 16


def _segment_sum_codegen(nv, context, builder, sig, args):
    out_t, _, _, feats_t, ent_t, dep_t = sig.args[:6]
    oa, fa, ea, da = (context.make_array(t)(context, builder, args[i]) for i, t in
                      ((0, out_t), (3, feats_t), (4, ent_t), (5, dep_t)))
    intp = context.get_value_type(types.intp)

    def as_intp(i):
        return context.cast(builder, args[i], sig.args[i], types.intp)

    k, c0, start, end = as_intp(1), as_intp(2), as_intp(6), as_intp(7)
    first = context.cast(builder, args[8], sig.args[8], types.boolean)
    c_out = builder.extract_value(oa.shape, 1)
    c_feat = builder.extract_value(fa.shape, 1)
    n_ent = builder.extract_value(ea.shape, 0)
    low = intp(0xFFFFFFFF)
    optr = builder.gep(oa.data, [builder.add(builder.mul(k, c_out), c0)])
    # Accumulators as allocas in the entry block: LLVM promotes them to registers.
    accs = [cgutils.alloca_once(builder, _V8) for _ in range(nv)]
    with builder.if_else(first) as (then, otherwise):
        with then:
            for a in accs:
                builder.store(ir.Constant(_V8, [0.0] * 8), a)
        with otherwise:
            for v, a in enumerate(accs):
                builder.store(builder.load(_vptr(builder, optr, intp(8 * v)), align=4), a)
    i8p = ir.IntType(8).as_pointer()
    pf = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
        "llvm.prefetch.p0i8")
    with cgutils.for_range_slice(builder, start, end, intp(1)) as (e, _):
        # Prefetch the depth value SEGMENT_PREFETCH entries on (in this segment or the next
        # ones): it is a dependent load (entry first), the one the loop would wait for.
        e2 = builder.add(e, intp(SEGMENT_PREFETCH))
        with builder.if_then(builder.icmp_signed("<", e2, n_ent), likely=True):
            ent2 = builder.load(builder.gep(ea.data, [e2]))
            ptr = builder.gep(da.data, [builder.and_(ent2, low)])
            builder.call(pf, [builder.bitcast(ptr, i8p), _I32(0), _I32(3), _I32(1)])
        ent = builder.load(builder.gep(ea.data, [e]))
        d = _splat(builder, builder.load(builder.gep(da.data, [builder.and_(ent, low)])))
        row = builder.ashr(ent, intp(32))
        fptr = builder.gep(fa.data, [builder.add(builder.mul(row, c_feat), c0)])
        for v, a in enumerate(accs):
            prod = builder.fmul(d, builder.load(_vptr(builder, fptr, intp(8 * v)), align=4))
            builder.store(builder.fadd(builder.load(a), prod), a)
    for v, a in enumerate(accs):
        builder.store(builder.load(a), _vptr(builder, optr, intp(8 * v)), align=4)
    return context.get_dummy_value()


def _is_index(t) -> bool:
    return isinstance(t, types.Array) and t.ndim == 1 and isinstance(t.dtype, types.Integer)


def _is_matrix(t) -> bool:
    return (isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
            and t.dtype == types.float32)


def _make_segment_sum(nv):
    @intrinsic
    def segment_sum(typingctx, out, k, c0, feats, entries, dep, start, end, first):
        if not (_is_matrix(out) and _is_matrix(feats) and isinstance(entries, types.Array)
                and entries.ndim == 1 and entries.dtype == types.int64
                and isinstance(dep, types.Array) and dep.ndim == 1
                and dep.dtype == types.float32):
            return None
        sig = types.void(out, k, c0, feats, entries, dep, start, end, first)

        def codegen(context, builder, sig, args):
            return _segment_sum_codegen(nv, context, builder, sig, args)

        return sig, codegen

    segment_sum.__doc__ = (
        f"``out[k, c0:c0+{8 * nv}] = (0 if first else out[k, c0:c0+{8 * nv}]) + sum over e in "
        f"[start, end), in order, of dep[entries[e] & 0xFFFFFFFF] * feats[entries[e] >> 32, "
        f"c0:c0+{8 * nv}]``, the accumulators held in registers; the caller guarantees the "
        "bounds.")
    return segment_sum


# Accumulating up to 12 vectors (96 channels) in registers: 12 accumulators + the splat +
# one loaded vector fit AVX2's 16 ymm registers.
SEGMENT_SUM_MAX_VECTORS = 12
(segment_sum1, segment_sum2, segment_sum3, segment_sum4, segment_sum5, segment_sum6,
 segment_sum7, segment_sum8, segment_sum9, segment_sum10, segment_sum11,
 segment_sum12) = (_make_segment_sum(nv) for nv in range(1, SEGMENT_SUM_MAX_VECTORS + 1))


def _row_backward_codegen(nv, context, builder, sig, args):
    go_t, f_t, _, ci_t, dep_t, gd_t = sig.args[:6]
    gf_t = sig.args[9]
    goa, fa, cia, da, gda, gfa = (context.make_array(t)(context, builder, args[i]) for i, t in
                                  ((0, go_t), (1, f_t), (3, ci_t), (4, dep_t), (5, gd_t),
                                   (9, gf_t)))
    intp = context.get_value_type(types.intp)

    def as_intp(i):
        return context.cast(builder, args[i], sig.args[i], types.intp)

    r, base, stride, d_bins = as_intp(2), as_intp(6), as_intp(7), as_intp(8)
    c = builder.extract_value(fa.shape, 1)
    fptr = builder.gep(fa.data, [builder.mul(r, c)])
    accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8, [0.0] * 8)) for _ in range(nv)]
    with cgutils.for_range(builder, d_bins) as loop:
        off = builder.add(base, builder.mul(loop.index, stride))
        k = context.cast(builder, builder.load(builder.gep(cia.data, [off])), ci_t.dtype,
                         types.intp)
        with builder.if_then(builder.icmp_signed(">=", k, intp(0))):
            gptr = builder.gep(goa.data, [builder.mul(k, c)])
            d = _splat(builder, builder.load(builder.gep(da.data, [off])))
            lanes = ir.Constant(_V8, [0.0] * 8)
            for v, a in enumerate(accs):
                g = builder.load(_vptr(builder, gptr, intp(8 * v)), align=4)
                builder.store(builder.fadd(builder.load(a), builder.fmul(d, g)), a)
                f = builder.load(_vptr(builder, fptr, intp(8 * v)), align=4)
                lanes = builder.fadd(lanes, builder.fmul(g, f))
            lane = [builder.extract_element(lanes, _I32(i)) for i in range(8)]
            add = builder.fadd
            dot = add(add(add(lane[0], lane[4]), add(lane[2], lane[6])),
                      add(add(lane[1], lane[5]), add(lane[3], lane[7])))
            builder.store(dot, builder.gep(gda.data, [off]))
    gfptr = builder.gep(gfa.data, [builder.mul(r, c)])
    for v, a in enumerate(accs):
        builder.store(builder.load(a), _vptr(builder, gfptr, intp(8 * v)), align=4)
    return context.get_dummy_value()


def _make_row_backward(nv):
    @intrinsic
    def row_backward(typingctx, grad_out, feats, r, ci, dep, gd, base, stride, d_bins, gf):
        if not (_is_matrix(grad_out) and _is_matrix(feats) and _is_matrix(gf)
                and _is_index(ci) and _is_vec(dep) and _is_vec(gd)):
            return None
        sig = types.void(grad_out, feats, r, ci, dep, gd, base, stride, d_bins, gf)

        def codegen(context, builder, sig, args):
            return _row_backward_codegen(nv, context, builder, sig, args)

        return sig, codegen

    row_backward.__doc__ = (
        f"Backward of one feature row r ({8 * nv} channels), for the points at ci[base + "
        "d * stride], d < d_bins: ``gd[...] = dot8(grad_out[k], feats[r])`` and ``gf[r] = sum "
        "over d of dep[...] * grad_out[k]`` (from 0, ascending d), gf[r] held in registers.")
    return row_backward


(row_backward1, row_backward2, row_backward3, row_backward4, row_backward5, row_backward6,
 row_backward7, row_backward8, row_backward9, row_backward10, row_backward11,
 row_backward12) = (_make_row_backward(nv) for nv in range(1, SEGMENT_SUM_MAX_VECTORS + 1))
