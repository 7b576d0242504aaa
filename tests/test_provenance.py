import datetime

from scaling.provenance import provenance


def test_provenance_names_spec_versions_commit_device_and_time():
    attrs = provenance("[demo]\nseed = 0\n")
    assert attrs["spec"] == "[demo]\nseed = 0\n"
    assert "jax==" in attrs["versions"] and "numpyro==" in attrs["versions"] and "scaling==" in attrs["versions"]
    assert attrs["git_commit"] and attrs["device"].startswith("cpu")
    assert datetime.datetime.fromisoformat(attrs["created"]).tzinfo is not None
