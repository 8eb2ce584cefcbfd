"""``import medkern`` stays light: the heavy subpackages (models, data, metrics, train, viz, losses) load on
first attribute access (PEP 562). Each check runs in a fresh interpreter, since this one has long imported
everything."""
import json
import subprocess
import sys
import textwrap

import pytest

LAZY = ("data", "losses", "metrics", "models", "train", "viz")


def _child(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_medkern_does_not_import_the_heavy_subpackages():
    got = _child("""
        import json, sys
        import medkern
        heavy = [m for m in sys.modules if m.split(".")[0] in ("sklearn", "matplotlib")
                 or m.startswith(tuple("medkern." + n for n in %r))]
        print(json.dumps({"heavy": sorted(heavy)}))
    """ % (LAZY,))
    assert got["heavy"] == []


@pytest.mark.parametrize("name", LAZY)
def test_attribute_access_imports_the_subpackage(name):
    got = _child(f"""
        import json, sys
        import medkern
        before = "medkern.{name}" in sys.modules
        mod = medkern.{name}
        import medkern.{name} as direct
        print(json.dumps({{"before": before, "name": mod.__name__, "same": mod is direct,
                          "cached": "{name}" in vars(medkern), "listed": "{name}" in dir(medkern),
                          "in_all": "{name}" in medkern.__all__}}))
    """)
    assert got == {"before": False, "name": f"medkern.{name}", "same": True, "cached": True, "listed": True,
                   "in_all": True}


def test_unknown_attribute_raises_attribute_error():
    got = _child("""
        import json
        import medkern
        try:
            medkern.no_such_thing
        except AttributeError as exc:
            print(json.dumps({"message": str(exc), "hasattr": hasattr(medkern, "no_such_thing")}))
    """)
    assert "medkern" in got["message"] and "no_such_thing" in got["message"]
    assert "models" in got["message"]  # the message lists what there is
    assert got["hasattr"] is False


def test_eager_names_still_there():
    got = _child("""
        import json
        import medkern
        print(json.dumps({n: hasattr(medkern, n) for n in ("backends", "nn", "ops", "patch", "cache_info",
                                                           "empty_cache", "__version__")}))
    """)
    assert all(got.values()), got
