"""Fuzz the readers of what users hand to advscale: a training config and a results file.

Whatever the bytes, reading ends in a valid config or results file, or in one UserError (the
message the command line prints as one line), and never allocates more than a few MB: the
inputs include random bytes, YAML and JSON built from the constructs that break parsers
(aliases, merge keys, tags, deep nesting, huge numbers, Latin-1 bytes) and mutations of
valid files.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from advscale.errors import UserError
from advscale.results import Results, load_results
from advscale.train import TrainConfig, load_config

VALID_CONFIG = yaml.safe_dump(
    {
        "recipe": {"name": "pgd", "eps": 8, "steps": 3},
        "epochs": 2,
        "data": {"n_train": 64},
        "eval": {"attacks": ["fgsm", "pgd"], "attack_kwargs": {"pgd": {"steps": 2}}},
    }
).encode()
VALID_RESULTS = json.dumps(
    Results(kind="eval", records=[{"attack": "pgd", "eps": 8.0, "accuracy": 0.5}]).to_dict()
).encode()

YAML_PIECES = [
    "recipe",
    "eval",
    "attack_kwargs",
    "pgd",
    "alpha",
    "eps",
    "name",
    "epochs",
    "model",
    "kwargs",
    ": ",
    ":",
    " ",
    "  ",
    "\n",
    "\n  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "!!python/object/apply:os.system ",
    "!!binary ",
    "!!set ",
    "!!float ",
    "? ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "'",
    '"',
    "\t",
    "#",
    "1e309",
    "-.inf",
    ".nan",
    "9" * 5000,
    "0x1F",
    "2026-13-45",
    "~",
    "null",
    "true",
    "\ufeff",
    "é",
]
JSON_PIECES = [
    '{"schema": "advscale.results", "version": 1, "records": ',
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    '"records"',
    '"config"',
    '"summary"',
    '"kind"',
    '"eval"',
    "null",
    "true",
    "NaN",
    "Infinity",
    "1e999",
    "-0",
    "9" * 5000,
    '"\\ud800"',
    '"\\u0000"',
    " ",
    "\n",
    '"',
]


def _mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few bytes replaced, inserted or removed."""

    @st.composite
    def mutate(draw) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(data)))
            kind = draw(st.sampled_from(["replace", "insert", "delete"]))
            byte = draw(st.integers(0, 255))
            if kind == "insert" or i == len(data):
                data.insert(i, byte)
            elif kind == "replace":
                data[i] = byte
            else:
                del data[i]
        return bytes(data)

    return mutate()


def _built(pieces: list[str]) -> st.SearchStrategy[bytes]:
    encode = st.sampled_from(["utf-8", "latin-1"])
    return st.builds(
        lambda parts, enc: "".join(parts).encode(enc, "replace"),
        st.lists(st.sampled_from(pieces), max_size=60),
        encode,
    )


def _nested() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda depth, open_, close: (open_ * depth + close * depth).encode(),
        st.integers(1, 50_000),
        st.sampled_from(["[", "{a: ", "- "]),
        st.sampled_from(["]", "}", ""]),
    )


FUZZ = settings(
    max_examples=100,
    # No clock: time is bounded by construction (size, depth and alias bounds refuse early),
    # and tests/core/test_files.py checks that each refusal stops at its bound.
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _bounded(read, path):
    """``read(path)``, with the memory it allocated at its peak."""
    tracemalloc.start()
    try:
        try:
            out = read(path)
        except UserError as e:
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=2000), _built(YAML_PIECES), _mutated(VALID_CONFIG), _nested())
)
@example(data=b"!!float")  # PyYAML's constructor: IndexError
@example(data=b"[" * 1175 + b"]" * 1175)  # PyYAML's scanner: quadratic in flow nesting
def test_any_bytes_as_a_config_end_in_a_valid_config_or_one_user_error(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    out, peak = _bounded(lambda p: load_config(p, []), path)
    if isinstance(out, UserError):
        assert str(out).startswith(str(path)), str(out)
    else:
        assert isinstance(out, TrainConfig)
    assert peak < 32 * 2**20


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=2000), _built(JSON_PIECES), _mutated(VALID_RESULTS), _nested()
    )
)
@example(data=b'{"schema": "advscale.results", "version": 1, "kind": "v", "records": []}')
def test_any_bytes_as_a_results_file_end_in_results_or_one_user_error(tmp_path, data):
    path = tmp_path / "results.json"
    path.write_bytes(data)
    out, peak = _bounded(load_results, path)
    if isinstance(out, UserError):
        assert str(out).startswith(str(path)), str(out)
    else:
        assert isinstance(out, Results) and all(isinstance(r, dict) for r in out.records)
    assert peak < 32 * 2**20


@pytest.mark.parametrize("read", [lambda p: load_config(p, []), load_results])
def test_the_fuzzed_readers_accept_the_valid_files(tmp_path, read):
    (tmp_path / "c.yaml").write_bytes(VALID_CONFIG)
    (tmp_path / "results.json").write_bytes(VALID_RESULTS)
    target = tmp_path / ("c.yaml" if read is not load_results else "results.json")
    assert not isinstance(_bounded(read, target)[0], UserError)
