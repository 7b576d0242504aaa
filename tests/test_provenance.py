"""Every dataset says what made it: the spec, versions, commit, device and time."""

import datetime
import subprocess

import jax

from scaling.provenance import provenance


def test_provenance_names_spec_versions_commit_device_and_time():
    attrs = provenance("[demo]\nseed = 0\n")
    assert attrs["spec"] == "[demo]\nseed = 0\n"
    assert "jax==" in attrs["versions"] and "numpyro==" in attrs["versions"] and "scaling==" in attrs["versions"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert attrs["git_commit"].removesuffix("+dirty") == (head or "unknown")  # the commit the code ran at, marked if edited
    # Whatever this machine runs on (CPU here, a GPU or TPU elsewhere): its platform, kind and count.
    device = jax.devices()[0]
    assert attrs["device"] == f"{device.platform}:{device.device_kind} x{jax.device_count()}"
    assert datetime.datetime.fromisoformat(attrs["created"]).tzinfo is not None
