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

All arrays are 1-D C-contiguous float32 of the same length (the caller guarantees it).
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
