"""A Numba parser for the entries of a nuScenes results object, straight into columns.

Parsing a validation-sized results file with a general JSON parser creates tens of millions
of Python objects. This parser reads the fixed shape of the format (sample token -> list of box
objects with known fields) directly into numpy arrays. Anything it does not expect (escaped
strings, NaN literals, a missing or malformed field, an unknown class) makes it return an error
code, and the caller falls back to the general parser, which also produces the precise error
message. Numbers are converted with correct rounding: exactly when the decimal mantissa and
power of ten are exact doubles, otherwise in double-double arithmetic with a rounding-boundary
check; the rare undecidable ones are returned for Python's ``float`` to convert.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Field ids of the numeric box columns (NUM_COLS float64 per box).
NUM_COLS = 13  # translation 3, size 3, rotation 4, velocity 2, score 1
_F_TRANSLATION, _F_SIZE, _F_ROTATION, _F_VELOCITY, _F_SCORE = 0, 3, 6, 10, 12

# Box fields the parser reads, in field-id order (anything else is skipped).
KEY_NAMES = (
    "translation",
    "size",
    "rotation",
    "velocity",
    "detection_score",
    "detection_name",
    "attribute_name",
    "sample_token",
    "num_pts",
)

_POW10 = np.array([10.0**i for i in range(23)])
_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp split for exact products without FMA


# Structure-scanner event kinds.
_STR_START, _STR_END, _OPEN, _CLOSE, _COMMA = 1, 2, 3, 4, 5


@njit(cache=True)
def _scan_json_structure(buf, base, state, events):  # pragma: no cover - compiled
    """Record top-level strings, depth-2 container bounds and depth-2 commas of a JSON chunk.

    ``state`` = [depth, in_string, escaped, resume_index] carries over between chunks; the
    scan stops early when ``events`` is nearly full and right after a depth-2 container opens
    (resume from ``state[3]``). Returns the
    number of events written; each event is (kind, absolute byte offset).
    """
    depth = state[0]
    in_str = state[1]
    esc = state[2]
    i = state[3]
    n = 0
    cap = events.shape[0] - 1
    size = buf.shape[0]
    while i < size and n < cap:
        c = buf[i]
        if in_str:
            if esc:
                esc = 0
            elif c == 92:  # backslash
                esc = 1
            elif c == 34:  # quote
                in_str = 0
                if depth == 1:
                    events[n, 0] = _STR_END
                    events[n, 1] = base + i
                    n += 1
        elif c == 34:
            in_str = 1
            if depth == 1:
                events[n, 0] = _STR_START
                events[n, 1] = base + i
                n += 1
        elif c == 123 or c == 91:  # { [
            depth += 1
            if depth == 2:
                events[n, 0] = _OPEN
                events[n, 1] = base + i
                n += 1
                # Hand control back: the caller may parse this value itself.
                i += 1
                break
        elif c == 125 or c == 93:  # } ]
            if depth == 2:
                events[n, 0] = _CLOSE
                events[n, 1] = base + i
                n += 1
            depth -= 1
        elif c == 44 and depth == 2:  # comma between depth-2 entries
            events[n, 0] = _COMMA
            events[n, 1] = base + i
            n += 1
        i += 1
    state[0] = depth
    state[1] = in_str
    state[2] = esc
    state[3] = i
    return n


@njit(cache=True, inline="always")
def _ws(buf, i):  # pragma: no cover - compiled
    n = buf.shape[0]
    while i < n and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@njit(cache=True, inline="always")
def _string_end(buf, i):  # pragma: no cover - compiled
    """Index of the closing quote of the string opening at ``i``; -1 if it has an escape,
    -2 if the input ends first.
    """
    n = buf.shape[0]
    j = i + 1
    while j < n:
        c = buf[j]
        if c == 34:
            return j
        if c == 92:
            return -1
        j += 1
    return -2


@njit(cache=True, inline="always")
def _two_prod(a, b):  # pragma: no cover - compiled
    p = a * b
    c = _SPLITTER * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLITTER * b
    bh = c - (c - b)
    bl = b - bh
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


@njit(cache=True)
def _decimal_to_double(m, e10, negative):  # pragma: no cover - compiled
    """Correctly rounded m * 10**e10 (m < 10**19, |e10| <= 22); (value, certain)."""
    if m == 0:
        return (-0.0 if negative else 0.0), True
    p = _POW10[abs(e10)]
    if m < np.uint64(9007199254740992):  # 2**53: m is an exact double
        x = float(m) * p if e10 >= 0 else float(m) / p
        return (-x if negative else x), True
    mh = float(m)
    # m - mh is small (|.| <= 2**10); wrapping uint64 subtraction read as int64 is exact.
    ml = float(np.int64(m - np.uint64(mh)))
    if e10 >= 0:
        q1, err1 = _two_prod(mh, p)
        q2 = err1 + ml * p
    else:
        q1 = mh / p
        ph, pl = _two_prod(q1, p)
        r = ((mh - ph) - pl) + ml
        q2 = r / p
    s = q1 + q2
    bb = s - q1
    err = (q1 - (s - bb)) + (q2 - bb)
    # s is the correctly rounded value unless the exact tail sits on a rounding boundary
    # (half an ulp of s) within the double-double error bound.
    ulp = np.spacing(abs(s))
    tol = abs(s) * 2.0**-96
    certain = abs(abs(err) - 0.5 * ulp) > tol
    return (-s if negative else s), certain


@njit(cache=True)
def _number(buf, i):  # pragma: no cover - compiled
    """Parse a JSON number at i -> (next index, value, certain, ok)."""
    n = buf.shape[0]
    j = i
    negative = False
    if j < n and buf[j] == 45:
        negative = True
        j += 1
    m = np.uint64(0)
    digits = 0  # significant digits kept in m (at most 19 fit a uint64)
    scale = 0  # integer digits beyond the kept ones (each multiplies by 10)
    inexact = False  # a non-zero digit did not fit
    e10 = 0
    seen = False
    while j < n and 48 <= buf[j] <= 57:
        seen = True
        d = buf[j] - 48
        if digits < 19:
            if m != 0 or d != 0:
                digits += 1
            m = m * np.uint64(10) + np.uint64(d)
        else:
            scale += 1
            if d != 0:
                inexact = True
        j += 1
    if j < n and buf[j] == 46:
        j += 1
        frac_seen = False
        while j < n and 48 <= buf[j] <= 57:
            frac_seen = True
            d = buf[j] - 48
            if digits < 19:
                if m != 0 or d != 0:
                    digits += 1
                m = m * np.uint64(10) + np.uint64(d)
                e10 -= 1
            elif d != 0:
                inexact = True
            j += 1
        if not frac_seen:
            return j, 0.0, False, False
    if not seen:
        return j, 0.0, False, False
    if j < n and (buf[j] == 101 or buf[j] == 69):
        j += 1
        eneg = False
        if j < n and (buf[j] == 43 or buf[j] == 45):
            eneg = buf[j] == 45
            j += 1
        ev = 0
        eseen = False
        while j < n and 48 <= buf[j] <= 57:
            eseen = True
            if ev < 100000:
                ev = ev * 10 + (buf[j] - 48)
            j += 1
        if not eseen:
            return j, 0.0, False, False
        e10 += -ev if eneg else ev
    if inexact:
        return j, 0.0, False, True
    e10 += scale
    if m == 0:
        return j, (-0.0 if negative else 0.0), True, True
    if e10 < -22 or e10 > 22:
        return j, 0.0, False, True
    v, certain = _decimal_to_double(m, e10, negative)
    return j, v, certain, True


@njit(cache=True)
def _skip_value(buf, i):  # pragma: no cover - compiled
    """Index after the JSON value at i, or -1 (escaped strings are skipped correctly)."""
    n = buf.shape[0]
    depth = 0
    in_str = False
    esc = False
    j = i
    while j < n:
        c = buf[j]
        if in_str:
            if esc:
                esc = False
            elif c == 92:
                esc = True
            elif c == 34:
                in_str = False
                if depth == 0:
                    return j + 1
        elif c == 34:
            in_str = True
        elif c == 123 or c == 91:
            depth += 1
        elif c == 125 or c == 93:
            if depth == 0:
                return j
            depth -= 1
            if depth == 0:
                return j + 1
        elif depth == 0 and c == 44:
            return j
        j += 1
    return -1


@njit(cache=True)
def _match_name(buf, s, e, names, offsets):  # pragma: no cover - compiled
    """Index of buf[s:e] in the packed name table, -1 if absent."""
    length = e - s
    for k in range(offsets.shape[0] - 1):
        a = offsets[k]
        b = offsets[k + 1]
        if b - a != length:
            continue
        same = True
        for t in range(length):
            if names[a + t] != buf[s + t]:
                same = False
                break
        if same:
            return k
    return -1


# parse_entries status codes.
PARSED = 0  # every complete entry parsed; stopped at the end of input or an incomplete entry
END = 1  # reached the '}' closing the results object (at the returned position)
FAILED = 2  # input the fast path does not take (the general parser must decide)


@njit(cache=True)
def parse_entries(
    buf, class_names, class_offsets, attr_names, attr_offsets, key_names, key_offsets, max_boxes
):  # pragma: no cover - compiled
    """Parse ``"token": [box, ...], ...`` (the inside of the results object) into columns.

    Works on a prefix of the input too: it stops before an entry cut off by the end of
    ``buf`` and reports where, so that a file can be fed chunk by chunk.

    Returns (status, stop, entry_spans (E, 2), entry_counts (E,), nums (B, 13), num_pts (B,),
    labels (B,), attrs (B,), fix_box (F,), fix_col (F,), fix_span (F, 2)): status is PARSED,
    END or FAILED; ``stop`` is the offset after the last complete entry (its comma included),
    or of the closing brace for END. ``fix_*`` list numbers whose rounding could not be
    decided here, for Python's float().
    """
    n = buf.shape[0]
    max_entries = n // 6 + 2
    spans = np.empty((max_entries, 2), np.int64)
    counts = np.zeros(max_entries, np.int64)
    nums = np.empty((max_boxes, NUM_COLS), np.float64)
    num_pts = np.full(max_boxes, -1, np.int64)
    labels = np.full(max_boxes, -1, np.int64)
    attrs = np.full(max_boxes, -1, np.int64)
    fix_cap = 1024
    fix_box = np.empty(fix_cap, np.int64)
    fix_col = np.empty(fix_cap, np.int64)
    fix_span = np.empty((fix_cap, 2), np.int64)
    nfix = 0
    ne = 0
    nb = 0
    good = 0  # offset after the last complete entry
    ne_good = 0
    nb_good = 0
    nfix_good = 0
    status = PARSED
    after_comma = False
    i = _ws(buf, 0)
    while True:
        good = i
        ne_good = ne
        nb_good = nb
        nfix_good = nfix
        if i >= n:
            break
        if buf[i] == 125:  # the results object closes
            status = FAILED if after_comma else END
            good = i
            break
        # "token": [
        if buf[i] != 34 or ne >= max_entries:
            status = FAILED
            break
        e = _string_end(buf, i)
        if e == -2:
            break  # cut off: wait for more input
        if e < 0:
            status = FAILED
            break
        tok_s = i + 1
        tok_e = e
        spans[ne, 0] = tok_s
        spans[ne, 1] = tok_e
        i = _ws(buf, e + 1)
        if i >= n:
            break
        if buf[i] != 58:
            status = FAILED
            break
        i = _ws(buf, i + 1)
        if i >= n:
            break
        if buf[i] != 91:
            status = FAILED
            break
        i = _ws(buf, i + 1)
        count = 0
        fail = False
        if i < n and buf[i] == 93:
            i += 1
        else:
            while True:
                # One box object.
                if i >= n or buf[i] != 123 or nb >= max_boxes:
                    fail = True
                    break
                nums[nb, _F_SCORE] = -1.0
                seen = 0
                i = _ws(buf, i + 1)
                if i < n and buf[i] == 125:
                    fail = True  # empty box object
                    break
                while True:
                    if i >= n or buf[i] != 34:
                        fail = True
                        break
                    ke = _string_end(buf, i)
                    if ke < 0:
                        if ke == -2:
                            i = n
                        fail = True
                        break
                    fid = _match_name(buf, i + 1, ke, key_names, key_offsets)
                    i = _ws(buf, ke + 1)
                    if i >= n or buf[i] != 58:
                        fail = True
                        break
                    i = _ws(buf, i + 1)
                    if fid < 0:
                        j = _skip_value(buf, i)
                        if j < 0:
                            i = n
                            fail = True
                            break
                        i = j
                    elif fid <= 3:
                        col = (_F_TRANSLATION, _F_SIZE, _F_ROTATION, _F_VELOCITY)[fid]
                        width = (3, 3, 4, 2)[fid]
                        if i >= n or buf[i] != 91:
                            fail = True
                            break
                        i = _ws(buf, i + 1)
                        k = 0
                        while k < width:
                            j, v, certain, ok = _number(buf, i)
                            if not ok:
                                if j >= n:
                                    i = n
                                fail = True
                                break
                            if not certain:
                                if nfix >= fix_cap:
                                    fail = True
                                    break
                                fix_box[nfix] = nb
                                fix_col[nfix] = col + k
                                fix_span[nfix, 0] = i
                                fix_span[nfix, 1] = j
                                nfix += 1
                            nums[nb, col + k] = v
                            k += 1
                            i = _ws(buf, j)
                            if k < width:
                                if i >= n or buf[i] != 44:
                                    fail = True
                                    break
                                i = _ws(buf, i + 1)
                        if fail:
                            break
                        if i >= n or buf[i] != 93:
                            fail = True
                            break
                        i += 1
                    elif fid == 4 or fid == 8:
                        j, v, certain, ok = _number(buf, i)
                        if not ok:
                            if j >= n:
                                i = n
                            fail = True
                            break
                        if fid == 4:
                            if not certain:
                                if nfix >= fix_cap:
                                    fail = True
                                    break
                                fix_box[nfix] = nb
                                fix_col[nfix] = _F_SCORE
                                fix_span[nfix, 0] = i
                                fix_span[nfix, 1] = j
                                nfix += 1
                            nums[nb, _F_SCORE] = v
                        else:
                            if not certain or v != np.floor(v):
                                fail = True
                                break
                            num_pts[nb] = np.int64(v)
                        i = j
                    else:
                        if i >= n or buf[i] != 34:
                            fail = True
                            break
                        se = _string_end(buf, i)
                        if se < 0:
                            if se == -2:
                                i = n
                            fail = True
                            break
                        if fid == 5:
                            lab = _match_name(buf, i + 1, se, class_names, class_offsets)
                            if lab < 0:
                                fail = True
                                break
                            labels[nb] = lab
                        elif fid == 6:
                            if se == i + 1:
                                attrs[nb] = -1
                            else:
                                at = _match_name(buf, i + 1, se, attr_names, attr_offsets)
                                if at < 0:
                                    fail = True
                                    break
                                attrs[nb] = at
                        else:  # sample_token must equal the entry's key
                            if se - (i + 1) != tok_e - tok_s:
                                fail = True
                                break
                            for t in range(tok_e - tok_s):
                                if buf[i + 1 + t] != buf[tok_s + t]:
                                    fail = True
                                    break
                            if fail:
                                break
                        i = se + 1
                    if fid >= 0:
                        if seen & (1 << fid):
                            fail = True  # duplicate key
                            break
                        seen |= 1 << fid
                    i = _ws(buf, i)
                    if i < n and buf[i] == 44:
                        i = _ws(buf, i + 1)
                        continue
                    if i < n and buf[i] == 125:
                        i += 1
                        break
                    fail = True
                    break
                if fail:
                    break
                # Required: translation, size, rotation, velocity, detection_name, sample_token.
                if (seen & 0b10101111) != 0b10101111:
                    fail = True
                    break
                nb += 1
                count += 1
                i = _ws(buf, i)
                if i < n and buf[i] == 44:
                    i = _ws(buf, i + 1)
                    continue
                if i < n and buf[i] == 93:
                    i += 1
                    break
                fail = True
                break
        if fail:
            # Cut off by the end of the input: wait for more. Anything else: not ours to judge.
            if i < n:
                status = FAILED
            break
        counts[ne] = count
        ne += 1
        i = _ws(buf, i)
        if i >= n:
            break  # the separator after it is not here yet: take the entry with the next chunk
        after_comma = False
        if i < n and buf[i] == 44:
            i = _ws(buf, i + 1)
            after_comma = True
        elif i < n and buf[i] != 125:
            status = FAILED
            break
    if status == END or status == FAILED:
        return (
            status,
            good,
            spans[:ne],
            counts[:ne],
            nums[:nb],
            num_pts[:nb],
            labels[:nb],
            attrs[:nb],
            fix_box[:nfix],
            fix_col[:nfix],
            fix_span[:nfix],
        )
    return (
        status,
        good,
        spans[:ne_good],
        counts[:ne_good],
        nums[:nb_good],
        num_pts[:nb_good],
        labels[:nb_good],
        attrs[:nb_good],
        fix_box[:nfix_good],
        fix_col[:nfix_good],
        fix_span[:nfix_good],
    )


def pack_names(names: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Names as one uint8 array plus (K + 1,) offsets, for ``parse_entries``."""
    encoded = [n.encode() for n in names]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    flat = np.frombuffer(b"".join(encoded), np.uint8).copy() if encoded else np.zeros(0, np.uint8)
    return flat, offsets


@njit(cache=True)
def parse_numbers(buf, starts):  # pragma: no cover - compiled
    """Test hook: parse the numbers starting at ``starts`` -> (values, certain, ok)."""
    out = np.empty(starts.shape[0])
    certain = np.zeros(starts.shape[0], np.bool_)
    ok = np.zeros(starts.shape[0], np.bool_)
    for k in range(starts.shape[0]):
        _, v, c, o = _number(buf, starts[k])
        out[k] = v
        certain[k] = c
        ok[k] = o
    return out, certain, ok
