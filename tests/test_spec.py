"""The spec loader: one schema for TOML files, flags and options, total over hostile input.

Whatever a user writes, ``build_spec`` returns a Spec or raises a UsageError whose message
is one line that says where the bad value is; never any other exception. No test here
starts a cluster: every check runs before one would exist.
"""

from __future__ import annotations

import io
import re
import shlex
import tempfile
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from harness.cluster.remote import NoopRemote
from harness.context import MAX_NODES, Spec, max_concurrency
from harness.context import Test as RunContext
from harness.errors import UsageError
from harness.names import slug
from harness.registry import load_factory, load_system
from harness.spec_loader import FLAGS, build_spec, key_lines
from harness.summary import print_summary
from harness.systems.counterd.adapter import CounterdOptions
from harness.systems.counterd.server import VARIANTS
from harness.systems.etcd_counter import EtcdOptions
from harness.systems.options import Options
from harness.systems.postgres_counter import PostgresOptions
from harness.systems.redis_counter import RedisOptions

ROOT = Path(__file__).resolve().parent.parent
SPEC_KEYS = sorted(Spec.model_fields)
OPTION_KEYS = sorted({k for m in (CounterdOptions, RedisOptions, PostgresOptions, EtcdOptions)
                      for k in m.model_fields} | {"forward-timeout", "sync-interval"})
SYSTEMS = ["counterd", "redis", "postgres", "etcd", "nosuch", ":", ".x:y", "builtins:dict",
           "json:nosuch", "a:b:c", ""]


def load(text: str, options: dict[str, str] | None = None,
         flags: dict[str, object] | None = None) -> Spec:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test.toml"
        path.write_text(text)
        return build_spec(str(path), options or {}, flags or {})


def refusal(text: str, **kw: object) -> str:
    with pytest.raises(UsageError) as e:
        load(text, **kw)  # type: ignore[arg-type]
    return str(e.value)


# --- the reproducers, one by one --------------------------------------------------

@pytest.mark.parametrize("text, line, words", [
    ("system = 5\n", 1, "system must be a string, got 5"),
    ('time_limit = 3\nnodes = "abc"\n', 2, "nodes must be a number of nodes or a list"),
    ('seed = "abc"\n', 1, "seed must be an integer"),
    ("nodes = 1.5\n", 1, "nodes must be a number of nodes"),
    ("seed = [1]\n", 1, "seed must be an integer, got a list"),
    ("store = 5\n", 1, "store must be a string"),
    ("seed = true\n", 1, "seed must be an integer, got true"),
    ("time_limit = inf\n", 1, "time_limit must be a finite number"),
    ("time_limit = 86401\n", 1, "time_limit must be at most 86400"),
    ("concurrency = 99999999999999999999999\n", 1, "concurrency must be at most"),
    ('nodes = ["n1", "n1"]\n', 1, "distinct"),
    ('nodes = ["../x"]\n', 1, "bad node name"),
    (f"nodes = {MAX_NODES + 1}\n", 1, f"from 1 to {MAX_NODES}"),
    ("seed = -1\n", 1, "seed must be at least 0"),
    ('backend = "k8s"\n', 1, "backend must be one of local, docker, ssh"),
    ("nemesis = 5\n", 1, "nemesis must be fault names"),
    ("\n\ncolour = 'red'\n", 3, "unknown key 'colour'"),
    ('timelimit = 3\n', 1, "did you mean time_limit?"),
    ("options = 5\n", 1, "options must be a table"),
    ("[options]\nvariant = 'naive'\n\n[options.deep]\nx = 1\n", 4,
     "must be a string, a number or true/false, got a table"),
    ("[options]\nvaraint = 'naive'\n", 2, "did you mean variant?"),
    ("[options]\ntimeout = 1e308\n", 2, "counterd option timeout must be at most 300"),
    ("[options]\ntimeout = nan\n", 2, "must be a finite number"),
    ("[options]\ntimeout = '2'\n", 2, "timeout must be a number, got '2'"),
    ("[options]\nport = 7070.0\n", 2, "port must be an integer"),
    ("[options]\nwindow = 0.1\n", 2, "window has no effect with variant=async-replica"),
    ('system = "redis"\noptions.clinet = "get-set"\n', 2, "did you mean client?"),
    ('system = "postgres"\n[options]\n"isolation" = "serializable"\n', 3,
     "isolation has no effect with client=update"),
])
def test_bad_values_name_the_file_line_and_key(text, line, words):
    message = refusal(text)
    assert "\n" not in message
    assert re.match(rf".*test\.toml line {line}: ", message), message
    assert words in message, message


def test_deep_nesting_and_huge_numbers_are_one_line():
    deep_array = "x = " + "[" * 900 + "]" * 900 + "\n"
    deep_table = "[" + ".".join(["a"] * 900) + "]\n"
    deep_options = "[options." + ".".join(["a"] * 900) + "]\n"
    for text in (deep_array, deep_table, deep_options, "seed = " + "9" * 5000 + "\n",
                 "= 1\n", "\x00", "[options]\n" * 2):
        message = refusal(text)
        assert "\n" not in message and "test.toml" in message, message


@pytest.mark.parametrize("flags, words", [
    ({"time_limit": "nan"}, "--time-limit must be a finite number"),
    ({"time_limit": "inf"}, "--time-limit must be a finite number"),
    ({"time_limit": "0"}, "--time-limit must be positive"),
    ({"rate": "nan"}, "--rate must be a finite number"),
    ({"rate": "-1"}, "--rate must be positive"),
    ({"concurrency": "99999999999999999999999"}, "--concurrency must be at most"),
    ({"concurrency": "2.5"}, "--concurrency must be an integer"),
    ({"nodes": "abc"}, "--nodes must be an integer"),
    ({"nodes": "0"}, "--nodes must be a number of nodes from 1"),
    ({"seed": "abc"}, "--seed must be an integer"),
    ({"seed": str(2**64)}, "--seed must be less than"),
    ({"backend": "k8s"}, "--backend must be one of local, docker, ssh"),
    ({"system": ""}, "--system must not be empty"),
    ({"store": "a\0b"}, "--store must not contain control characters"),
    ({"store": "a\nb"}, "--store must not contain control characters"),
    ({"node_names": ("n1", "n1")}, "--node"),
    ({"node_names": ("a", "b"), "nodes": "2"}, "not both"),
])
def test_bad_flags_name_the_flag(flags, words):
    with pytest.raises(UsageError) as e:
        build_spec(None, {}, flags)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("options, system, words", [
    ({"varaint": "naive"}, "counterd", "-o varaint: unknown option 'varaint' for counterd"),
    ({"clinet": "get-set"}, "redis", "did you mean client?"),
    ({"timeout": "1e308"}, "counterd", "timeout must be at most 300"),
    ({"timeout": "1e308"}, "etcd", "timeout must be at most 300"),
    ({"isolation": "serializable"}, "postgres", "isolation has no effect with client=update"),
    ({"client": "update", "isolation": "serializable"}, "postgres", "has no effect"),
    ({"window": "0.5"}, "redis", "window has no effect with client=incr"),
    ({"variant": "atomic", "sync-interval": "1"}, "counterd",
     "sync-interval has no effect with variant=atomic"),
    ({"variant": "naive", "forward_timeout": "9"}, "counterd", "forward-timeout has no effect"),
    ({"port": "70000"}, "redis", "port must be at most 65535"),
    ({"reads": "stale"}, "etcd", "reads must be one of linearizable, serializable"),
])
def test_bad_options_are_refused_with_the_flag(options, system, words):
    with pytest.raises(UsageError) as e:
        build_spec(None, options, {"system": system})
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_good_input_keeps_its_meaning():
    spec = load('name = "mine"\nnodes = ["a", "b"]\nnemesis = "partition, kill"\n'
                'time_limit = 3\nrate = 50\nseed = 7\n[options]\nvariant = "naive"\n'
                "window = 0.01\n", options={"timeout": "0.5"}, flags={"concurrency": "4"})
    assert (spec.name, spec.nodes, spec.nemesis, spec.time_limit, spec.rate, spec.seed,
            spec.concurrency) == ("mine", ["a", "b"], ["partition", "kill"], 3.0, 50.0, 7, 4)
    assert spec.options == {"variant": "naive", "window": 0.01, "timeout": "0.5"}
    rmw = build_spec(None, {"client": "read-modify-write", "isolation": "serializable"},
                     {"system": "postgres"})
    assert rmw.options["isolation"] == "serializable"
    assert max_concurrency() <= 1000


def test_a_user_system_without_a_schema_takes_any_option(tmp_path, monkeypatch):
    (tmp_path / "plain_sys.py").write_text("def make(options):\n    return options\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = build_spec(None, {"anything": "goes"}, {"system": "plain_sys:make"})
    assert spec.options == {"anything": "goes"}
    with pytest.raises(UsageError, match="did not make a system"):
        load_system("plain_sys:make", spec.options)


def test_a_user_system_declaring_a_schema_gets_it_checked(tmp_path, monkeypatch):
    (tmp_path / "typed_sys.py").write_text(
        "from typing import Literal\n"
        "from harness.systems.options import Options, Seconds, declares\n"
        "class MyOptions(Options):\n"
        "    mode: Literal['safe', 'fast'] = 'safe'\n"
        "    timeout: Seconds = 1.0\n"
        "@declares(MyOptions)\n"
        "def make(options):\n"
        "    return MyOptions.parse(options)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_spec(None, {"mode": "fast"}, {"system": "typed_sys:make"})
    with pytest.raises(UsageError, match="did you mean mode"):
        build_spec(None, {"mdoe": "fast"}, {"system": "typed_sys:make"})
    with pytest.raises(UsageError, match="timeout must be at most 300"):
        build_spec(None, {"timeout": "1e9"}, {"system": "typed_sys:make"})


def test_counterd_variants_match_the_server():
    from typing import get_args

    assert get_args(CounterdOptions.model_fields["variant"].annotation) == VARIANTS


def test_every_readme_run_example_passes_the_schema():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    examples = [line.split("#")[0] for block in blocks for line in block.splitlines()
                if line.startswith("splitbrain run ")]
    assert examples
    from harness.cli import cli

    for line in examples:
        args = shlex.split(line)[2:]
        ctx = cli.commands["run"].make_context("run", args)
        params = dict(ctx.params)
        options = dict(p.split("=", 1) for p in params.pop("options"))
        test_file = params.pop("test_file")
        assert test_file is None
        build_spec(None, options, params)


# --- names ----------------------------------------------------------------------------

@given(st.text(max_size=300))
def test_a_slug_is_one_safe_directory_inside_the_store(name):
    s = slug(name)
    assert re.fullmatch(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,79}", s), s
    assert s != "latest"
    store = Path("/store")
    assert (store / s).resolve().parent == store
    if re.fullmatch(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,79}", name) and name != "latest":
        assert s == name


@given(st.text(max_size=40), st.text(max_size=40))
def test_different_names_get_different_directories(a, b):
    if a != b:
        assert slug(a) != slug(b)


def test_hostile_names_stay_names(tmp_path):
    from harness.store import new_run_dir

    for name in ("../../x", "/etc", "latest", "demo[/]x", "javascript:alert(1)//",
                 "pkg.mod:factory-counter-none", "\x00", "", ".hidden"):
        run_dir = new_run_dir(tmp_path / "store", name)
        assert run_dir.resolve().is_relative_to((tmp_path / "store").resolve())
        assert ":" not in run_dir.parent.name and run_dir.parent.name != "latest"
    assert not (tmp_path / "x").exists()


def test_the_summary_prints_a_name_with_markup_as_text(tmp_path):
    spec = Spec(name="demo[/]x [bold]y\\", nodes=["n1"])
    out = io.StringIO()
    print_summary(RunContext(spec, NoopRemote(), tmp_path), [], {"valid": True, "anomalies": []},
                  ["n1"], console=Console(file=out, width=200))
    assert "demo[/]x [bold]y\\" in out.getvalue()


# --- the registry is total ---------------------------------------------------------------

@pytest.mark.parametrize("name", [":", ".x:y", "a:b:c", "x:", ":y", "os:path.join",
                                  "sys:exit", "json:loads",
                                  "builtins:nosuch", "nosuch_module_xyz:f", "a b:c",
                                  "x" * 1000 + ":y", "\x00:y", "json:__doc__"])
def test_hostile_factory_names_are_one_line(name):
    with pytest.raises(UsageError) as e:
        load_system(name, {})
    assert "\n" not in str(e.value)


def test_a_factory_that_makes_no_system_or_exits_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "odd_sys.py").write_text(
        "import sys\n"
        "def a_dict(options):\n    return dict(options)\n"
        "def exits(options):\n    sys.exit(3)\n"
        "def raises(options):\n    raise KeyError('x')\n"
        "not_callable = 5\n")
    (tmp_path / "broken_sys.py").write_text("raise SystemExit('no')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, words in (("odd_sys:a_dict", "did not make a system (it made a dict)"),
                        ("odd_sys:exits", "failed: SystemExit"),
                        ("odd_sys:raises", "failed: KeyError"),
                        ("odd_sys:not_callable", "not callable"),
                        ("broken_sys:make", "cannot import system module 'broken_sys'"),
                        ("builtins:dict", "standard library"),
                        ("builtins:input", "standard library"),
                        ("os.path:join", "standard library")):
        with pytest.raises(UsageError, match=re.escape(words)):
            load_system(name, {})


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_load_factory_is_total(name):
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name, re.ASCII):
        return  # a well-formed name imports a real module: covered by the cases above
    with pytest.raises(UsageError):
        load_factory("system", name, {"counterd": "harness.systems.counterd:make_system"}
                     if name != "counterd" else {})


# --- property-based: hostile documents and flags -----------------------------------------

def toml_string(s: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " ._-:/[]" else f"\\u{ord(c):04x}"
                         for c in s if ord(c) < 0xD800 or ord(c) > 0xDFFF) + '"'


scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "0", "-0.0", "1.5", "true", "false",
                     "1979-05-27", "07:32:00", "0x10", "1_000", "[]", "{}", "[1, 'a']",
                     "{a = 1}", "[[[[[1]]]]]", "'''x\ny'''", "9" * 5000]),
    st.floats(allow_nan=True, allow_infinity=False).map(repr).filter(lambda r: "e" not in r
                                                                    or "." in r),
    st.text(max_size=20).map(toml_string),
    st.sampled_from(SYSTEMS + [*VARIANTS, "none", "partition,kill", "n1"]).map(toml_string),
)
good = st.sampled_from(["3", "1", "0.5", "20", '"counterd"', '"redis"', '"counter"',
                        '"none"', '"partition,kill"', '["kill", "pause"]', '["a", "b"]',
                        '"local"', '"store"', '"naive"', '"get-set"', '"read-modify-write"',
                        '"serializable"', '"off"', '"async"'])
top_keys = st.one_of(st.sampled_from([k for k in SPEC_KEYS if k != "options"]),
                     st.from_regex(r"[a-z_]{1,8}", fullmatch=True))
option_keys = st.one_of(st.sampled_from(OPTION_KEYS), st.from_regex(r"[a-z_-]{1,8}",
                                                                    fullmatch=True))


def render(top: dict[str, str], options: dict[str, str] | None) -> str:
    text = "".join(f"{k} = {v}\n" for k, v in top.items())
    if options is not None:
        text += "[options]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
    return text


documents = st.one_of(
    st.builds(render, st.dictionaries(top_keys, st.one_of(good, scalars), max_size=8),
              st.none() | st.dictionaries(option_keys, st.one_of(good, scalars),
                                          max_size=4)),
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(documents)
def test_any_document_is_a_spec_or_one_line(text):
    try:
        spec = load(text)
    except UsageError as e:
        message = str(e)
        assert "\n" not in message and "test.toml" in message, message
    else:
        assert isinstance(spec, Spec) and spec.nodes and spec.time_limit > 0


texts = st.one_of(st.text(max_size=30), st.sampled_from(
    ["nan", "inf", "-1", "0", "1", "3", "1.5", "1e308", "99999999999999999999999", "",
     "none", "partition,kill", "local", "docker", *SYSTEMS]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FLAGS)), texts, max_size=5),
       st.dictionaries(st.one_of(st.sampled_from(OPTION_KEYS), st.text(min_size=1,
                                                                     max_size=10)),
                       texts, max_size=4),
       st.lists(st.text(max_size=10), max_size=4))
def test_any_flags_are_a_spec_or_one_line(flags, options, nodes):
    if nodes:
        flags["node_names"] = tuple(nodes)
    try:
        spec = build_spec(None, options, flags)
    except UsageError as e:
        assert "\n" not in str(e), str(e)
    else:
        assert isinstance(spec, Spec)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([CounterdOptions, RedisOptions, PostgresOptions, EtcdOptions]),
       st.dictionaries(st.sampled_from(OPTION_KEYS), st.one_of(texts, st.integers(),
                                                               st.floats(), st.booleans()),
                       max_size=5))
def test_option_schemas_parse_or_refuse_in_one_line(model: type[Options], options):
    try:
        model.parse(options)
    except UsageError as e:
        assert "\n" not in str(e) and model.owner in str(e), str(e)


def test_key_lines_finds_keys_in_tables_and_dotted_keys():
    text = ('# c\nsystem = "x"\n\n[options]\n"time-out" = 1\ns = """\nfoo = 1\n"""\n'
            "port = 2\n[options.deep.er]\nz = 3\n")
    lines = key_lines(text)
    assert lines[("system",)] == 2 and lines[("options",)] == 4
    assert lines[("options", "time-out")] == 5 and lines[("options", "port")] == 9
    assert ("options", "foo") not in lines and lines[("options", "deep")] == 10


def test_click_keeps_flags_as_text_for_the_schema():
    from harness.cli import cli

    ctx = cli.commands["run"].make_context("run", ["--nodes", "1.5", "--seed", "x"])
    assert ctx.params["nodes"] == "1.5" and ctx.params["seed"] == "x"
    with pytest.raises(click.BadParameter):
        cli.commands["serve"].make_context("serve", ["--port", "70000"])


def test_a_user_workload_without_a_schema_lets_its_keys_through(tmp_path, monkeypatch):
    (tmp_path / "plain_load.py").write_text("def make(options):\n    return options\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = build_spec(None, {"variant": "naive", "keys": "9"}, {"workload": "plain_load:make"})
    assert spec.options == {"variant": "naive", "keys": "9"}
    with pytest.raises(UsageError, match="counterd option variant must be one of"):
        build_spec(None, {"variant": "x"}, {"workload": "plain_load:make"})
