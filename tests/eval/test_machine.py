"""``eval.machine``: the reference convolution measures the machine, not a constant."""

from __future__ import annotations

import torch

from eval.machine import describe, machine_facts, reference_conv_ms


def test_reference_time_tracks_the_threads_it_is_given(monkeypatch):
    # The reference is one thread whatever the caller set, and the caller's count comes back.
    torch.set_num_threads(2)
    one = reference_conv_ms(repeats=3)
    assert torch.get_num_threads() == 2
    # A conv four times the work (twice the side) takes clearly longer: the number is a timing.
    import eval.machine as m

    monkeypatch.setitem(m.REFERENCE_CONV, "hw", 256)
    bigger = reference_conv_ms(repeats=3)
    assert bigger > 2.0 * one > 0


def test_facts_name_the_cpu_and_read_back_in_one_line():
    f = machine_facts()
    assert f["cores"] >= 1 and f["torch"] == torch.__version__
    assert isinstance(f["simd"], list) and f["cpu"]
    line = describe(f)
    assert f"{f['cores']} cores" in line and f"{f['reference_conv_ms']:.1f} ms" in line
