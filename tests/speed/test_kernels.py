"""The kernels' scalar vectors are named once: the Python NamedTuples equal the C++ structs."""

from __future__ import annotations

import re

import pytest

from optcompose.speed.kernels import _build as build
from optcompose.speed.kernels import _calls as calls


def _structs(source: str) -> dict[str, list[str]]:
    """``{name: [field, ...]}`` for every ``struct XScalars [: Base] { float a, b; ... };`` in the C++."""
    found: dict[str, list[str]] = {}
    for name, base, body in re.findall(r"struct (\w+Scalars)\s*(?::\s*(\w+))?\s*\{([^}]*)\}", source):
        fields = found.get(base, []) if base else []
        for declaration in body.split(";"):
            declaration = declaration.strip()
            if declaration:
                assert declaration.startswith("float "), declaration
                fields = fields + [f.strip() for f in declaration[len("float ") :].split(",")]
        found[name] = fields
    return found


@pytest.mark.parametrize("scalars", [calls.AdamScalars, calls.LambScalars, calls.SgdScalars], ids=lambda c: c.__name__)
def test_python_scalars_match_the_cpp_struct(scalars):
    structs = _structs(build.SOURCE.read_text())
    assert structs[scalars.__name__] == list(scalars._fields)


def test_the_parser_sees_every_struct():
    assert set(_structs(build.SOURCE.read_text())) == {"AdamScalars", "LambScalars", "SgdScalars"}
