import re
from pathlib import Path

import pytest

from scaling.errors import first_line


@pytest.mark.parametrize("error, plain, typed", [
    (ValueError("bad value\nmore detail"), "bad value", "ValueError: bad value"),
    (KeyError("name"), "'name'", "KeyError: 'name'"),
    (OSError("\n  indented first line\nsecond"), "indented first line", "OSError: indented first line"),
    (RuntimeError(""), "RuntimeError", "RuntimeError"),
    (TypeError("  \n "), "TypeError", "TypeError"),
])
def test_first_line_is_the_reason_in_one_line(error, plain, typed):
    assert first_line(error) == plain
    assert first_line(error, with_type=True) == typed


def test_no_module_cuts_an_error_message_to_its_first_line_itself():
    package = Path(__file__).resolve().parents[1] / "scaling"
    cutting = re.compile(r"""(str\(\w+\)(\.strip\(\))?|\{\w+\}["'])\.splitlines\(\)""")
    found = [f"{path.relative_to(package)}:{number}" for path in package.rglob("*.py") if path.name != "errors.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if cutting.search(line)]
    assert not found, f"use scaling.errors.first_line: {found}"


def test_memory_and_disk_running_out_are_told_apart_on_real_errors():
    import errno

    import jax.numpy as jnp
    import numpy as np

    from scaling.errors import out_of_memory, out_of_space

    errors = []
    for allocate in (lambda: np.ones(2 ** 48, np.uint8), lambda: jnp.zeros(2 ** 48, jnp.uint8).block_until_ready()):
        try:  # 256 TiB: refused at once, nothing is allocated
            allocate()
        except Exception as error:
            errors.append(error)
    assert len(errors) == 2 and isinstance(errors[0], MemoryError) and "RESOURCE_EXHAUSTED" in str(errors[1])
    assert all(out_of_memory(e) and out_of_space(e) is None for e in errors)
    # tensorstore (orbax's arrays) reports a full disk as RESOURCE_EXHAUSTED too: a disk, not memory
    disk = ValueError("RESOURCE_EXHAUSTED: Error writing \"w/0\": Failed to write 455038 bytes to file 7: No space left "
                      "on device [os_error_code='28']")
    assert out_of_space(disk) == "no space left on device" and not out_of_memory(disk)
    assert out_of_space(OSError(errno.EDQUOT, "quota")) == "disk quota exceeded"
    assert out_of_space(OSError(errno.EACCES, "denied")) is None and not out_of_memory(ValueError("bad"))


def test_a_full_disk_reads_the_same_in_another_process():
    import pickle

    from scaling.errors import DiskFull

    full = DiskFull("no space left on device", "run/cells/a.nc", "the earlier file is unchanged")
    again = pickle.loads(pickle.dumps(full))
    assert str(again) == str(full) == ("no space left on device writing run/cells/a.nc (the earlier file is "
                                       "unchanged); free space and rerun")
