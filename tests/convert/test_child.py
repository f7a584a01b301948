"""How many threads the converter's tools (llama-quantize, llama-imatrix) and writer get by default."""

from __future__ import annotations

import os

import pytest

from tuillm.convert.child import usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity call here")
def test_tools_default_to_the_cpus_this_process_may_use() -> None:
    """taskset or a container's cpuset narrows them; all of the machine's would make the tools' threads share."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert usable_cpus() == len(allowed)
