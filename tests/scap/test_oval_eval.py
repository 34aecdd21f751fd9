"""The OVAL evaluator on small hand-written documents over real directory trees: semantics
(operators, negate, existence, variables), systemd units from unit files and links, configured
sysctl values, and hostile guest content (escaping links, huge files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vmwarden.scap.oval import evaluate, load_oval
from vmwarden.scap.oval_localfs import LocalRootFiles
from vmwarden.scap.oval_ops import combine, pcre_to_python

HEAD = """<?xml version="1.0"?>
<oval_definitions xmlns="http://oval.mitre.org/XMLSchema/oval-definitions-5"
 xmlns:ind="http://oval.mitre.org/XMLSchema/oval-definitions-5#independent"
 xmlns:unix="http://oval.mitre.org/XMLSchema/oval-definitions-5#unix"
 xmlns:linux="http://oval.mitre.org/XMLSchema/oval-definitions-5#linux">
"""


def doc(tmp_path: Path, definitions: str, tests: str, objects: str, states: str = "",
        variables: str = "") -> Path:  # fmt: skip
    path = tmp_path / "oval.xml"
    path.write_text(
        f"{HEAD}<definitions>{definitions}</definitions><tests>{tests}</tests>"
        f"<objects>{objects}</objects><states>{states}</states>"
        f"<variables>{variables}</variables></oval_definitions>"
    )
    return path


def defn(name: str, criteria: str) -> str:
    return (
        f'<definition id="oval:t:def:{name}" class="compliance" version="1">{criteria}</definition>'
    )


def crit(*tests: str, op: str = "AND", negate: bool = False) -> str:
    inner = "".join(
        f'<criterion test_ref="oval:t:tst:{t.lstrip("!")}"'
        + (' negate="true"' if t.startswith("!") else "")
        + "/>"
        for t in tests
    )
    return f'<criteria operator="{op}" negate="{str(negate).lower()}">{inner}</criteria>'


def tfc_test(
    name: str, path: str, pattern: str, *, state: str = "", existence: str = ""
) -> tuple[str, str]:
    ex = f' check_existence="{existence}"' if existence else ""
    st = f'<ind:state state_ref="oval:t:ste:{state}"/>' if state else ""
    test = (
        f'<ind:textfilecontent54_test id="oval:t:tst:{name}" check="all"{ex} version="1">'
        f'<ind:object object_ref="oval:t:obj:{name}"/>{st}</ind:textfilecontent54_test>'
    )
    obj = (
        f'<ind:textfilecontent54_object id="oval:t:obj:{name}" version="1">'
        f"<ind:filepath>{path}</ind:filepath>"
        f'<ind:pattern operation="pattern match">{pattern}</ind:pattern>'
        f'<ind:instance datatype="int" operation="greater than or equal">1</ind:instance>'
        f"</ind:textfilecontent54_object>"
    )
    return test, obj


def run(path: Path, root: Path, **kw: object) -> dict[str, tuple[str, str]]:
    res = evaluate(load_oval(path), LocalRootFiles(root), **kw)  # type: ignore[arg-type]
    return {k.rsplit(":", 1)[-1]: (v.result, v.reason) for k, v in res.items()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc/ssh").mkdir(parents=True)
    (r / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n#PermitRootLogin yes\n")
    (r / "etc/login.defs").write_text("#PASS_MIN_LEN 5\n")
    return r


EXTEND_NOT_AND = '<extend_definition definition_ref="oval:t:def:and" negate="true"/>'


def test_operators_negate_and_existence(tmp_path: Path, root: Path) -> None:
    t1, o1 = tfc_test("a", "/etc/ssh/sshd_config", r"^PermitRootLogin\s+no$")
    t2, o2 = tfc_test("b", "/etc/ssh/sshd_config", r"^PermitRootLogin\s+yes$")
    t3, o3 = tfc_test("c", "/etc/absent", r"^x$", existence="none_exist")
    defs = (
        defn("and", crit("a", "b"))
        + defn("or", crit("a", "b", op="OR"))
        + defn("one", crit("a", "!b", op="ONE"))
        + defn("xor", crit("a", "!b", op="XOR"))
        + defn("neg", crit("b", negate=True))
        + defn("absent", crit("c"))
        + defn("ext", f"<criteria>{EXTEND_NOT_AND}</criteria>")
    )  # fmt: skip
    out = run(doc(tmp_path, defs, t1 + t2 + t3, o1 + o2 + o3), root)
    assert {k: v[0] for k, v in out.items()} == {
        "and": "false", "or": "true", "one": "false", "xor": "false",
        "neg": "true", "absent": "true", "ext": "true",
    }  # fmt: skip


def test_result_tables_keep_unknowns_honest() -> None:
    assert combine("AND", ["true", "not evaluated"]) == "not evaluated"
    assert combine("AND", ["false", "not evaluated"]) == "false"
    assert combine("OR", ["true", "error"]) == "true"
    assert combine("OR", ["false", "error"]) == "error"
    assert combine("AND", ["not applicable", "true"]) == "true"


def test_variable_without_values_is_no_item_not_a_pass(tmp_path: Path, root: Path) -> None:
    """login.defs has no PASS_MIN_LEN: the value compared against the XCCDF minimum does not
    exist, so the check fails (it read as passing when an empty value list was an item)."""
    tests = (
        '<ind:variable_test id="oval:t:tst:len" check="all" version="1">'
        '<ind:object object_ref="oval:t:obj:len"/><ind:state state_ref="oval:t:ste:len"/>'
        "</ind:variable_test>"
    )
    objects = (
        '<ind:textfilecontent54_object id="oval:t:obj:raw" version="1">'
        "<ind:filepath>/etc/login.defs</ind:filepath>"
        r'<ind:pattern operation="pattern match">^PASS_MIN_LEN\s+(\d+)</ind:pattern>'
        '<ind:instance datatype="int">1</ind:instance></ind:textfilecontent54_object>'
        '<ind:variable_object id="oval:t:obj:len" version="1">'
        "<ind:var_ref>oval:t:var:len</ind:var_ref></ind:variable_object>"
    )
    states = (
        '<ind:variable_state id="oval:t:ste:len" version="1"><ind:value datatype="int" '
        'operation="greater than or equal" var_ref="oval:t:var:min" var_check="at least one"/>'
        "</ind:variable_state>"
    )
    variables = (
        '<local_variable id="oval:t:var:len" datatype="int" version="1" comment="x">'
        '<object_component object_ref="oval:t:obj:raw" item_field="subexpression"/>'
        "</local_variable>"
        '<external_variable id="oval:t:var:min" datatype="int" version="1" comment="x"/>'
    )
    path = doc(tmp_path, defn("len", crit("len")), tests, objects, states, variables)
    ext = {"oval:t:var:min": ["14"]}
    assert run(path, root, external_vars=ext)["len"][0] == "false"
    (root / "etc/login.defs").write_text("PASS_MIN_LEN 15\n")
    assert run(path, root, external_vars=ext)["len"][0] == "true"
    (root / "etc/login.defs").write_text("PASS_MIN_LEN 8\n")
    assert run(path, root, external_vars=ext)["len"][0] == "false"
    result, reason = run(path, root)["len"]  # the XCCDF value was not passed
    assert result == "error" and "oval:t:var:min was not given" in reason


def test_links_never_leave_the_root(tmp_path: Path, root: Path) -> None:
    """A guest's absolute or ``..`` link resolves inside the guest, as in a chroot."""
    secret = tmp_path / "host-secret"
    secret.write_text("PermitRootLogin yes\n")
    os.symlink(str(secret), root / "etc/abs")  # absolute: the guest's own /tmp/...
    os.symlink("../../../../../../host-secret", root / "etc/rel")
    t1, o1 = tfc_test("abs", "/etc/abs", "PermitRootLogin")
    t2, o2 = tfc_test("rel", "/etc/rel", "PermitRootLogin")
    out = run(
        doc(tmp_path, defn("abs", crit("abs")) + defn("rel", crit("rel")), t1 + t2, o1 + o2), root
    )
    assert out == {"abs": ("false", ""), "rel": ("false", "")}
    files = LocalRootFiles(root)
    assert files.read_text("/etc/abs") is None and files.read_text("/etc/rel") is None


def test_a_huge_guest_file_is_an_error_not_a_regex_run(tmp_path: Path, root: Path) -> None:
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n" + "#" * (2 << 20))
    t, o = tfc_test("a", "/etc/ssh/sshd_config", "^PermitRootLogin no$")
    result, reason = run(doc(tmp_path, defn("a", crit("a")), t, o), root)["a"]
    assert result == "error" and "larger than 1048576 bytes" in reason


def _units(root: Path) -> None:
    lib = root / "lib/systemd/system"
    lib.mkdir(parents=True)
    (lib / "multi-user.target").write_text("[Unit]\nRequires=basic.target\n")
    (lib / "basic.target").write_text("[Unit]\nWants=sockets.target\n")
    (lib / "sockets.target").write_text("[Unit]\n")
    (lib / "graphical.target").write_text("[Unit]\nRequires=multi-user.target\n")
    for name in ("cron.service", "rsync.service", "debug-shell.service", "x.socket"):
        (lib / name).write_text("[Unit]\n[Service]\nExecStart=/bin/true\n")
    etc = root / "etc/systemd/system"
    (etc / "multi-user.target.wants").mkdir(parents=True)
    (etc / "sockets.target.wants").mkdir()
    os.symlink("/lib/systemd/system/cron.service", etc / "multi-user.target.wants/cron.service")
    os.symlink("/lib/systemd/system/x.socket", etc / "sockets.target.wants/x.socket")
    os.symlink("/dev/null", etc / "debug-shell.service")  # masked


def test_systemd_units_from_unit_files_and_links(tmp_path: Path, root: Path) -> None:
    """Ground truth written here: cron enabled in multi-user, x.socket through basic →
    sockets, rsync installed but not enabled, debug-shell masked."""
    _units(root)
    tests = objects = states = defs = ""
    for name, unit in (("cron", "cron.service"), ("sock", "x.socket"), ("rsync", "rsync.service")):
        tests += (
            f'<linux:systemdunitdependency_test id="oval:t:tst:{name}" check="all" version="1">'
            '<linux:object object_ref="oval:t:obj:mu"/>'
            f'<linux:state state_ref="oval:t:ste:{name}"/>'
            "</linux:systemdunitdependency_test>"
        )
        states += (
            f'<linux:systemdunitdependency_state id="oval:t:ste:{name}" version="1">'
            f'<linux:dependency entity_check="at least one">{unit}</linux:dependency>'
            "</linux:systemdunitdependency_state>"
        )
        defs += defn(name, crit(name))
    objects += (
        '<linux:systemdunitdependency_object id="oval:t:obj:mu" version="1">'
        '<linux:unit operation="pattern match">^multi-user.target$</linux:unit>'
        "</linux:systemdunitdependency_object>"
    )
    for name, unit, prop, value in (
        ("active", "cron.service", "ActiveState", "active"),
        ("inactive", "rsync.service", "ActiveState", "active"),
        ("masked", "debug-shell.service", "LoadState", "masked"),
    ):
        tests += (
            f'<linux:systemdunitproperty_test id="oval:t:tst:{name}" check="all" version="1">'
            f'<linux:object object_ref="oval:t:obj:{name}"/>'
            f'<linux:state state_ref="oval:t:ste:{name}"/>'
            "</linux:systemdunitproperty_test>"
        )
        objects += (
            f'<linux:systemdunitproperty_object id="oval:t:obj:{name}" version="1">'
            f'<linux:unit operation="pattern match">^{unit}$</linux:unit>'
            f"<linux:property>{prop}</linux:property></linux:systemdunitproperty_object>"
        )
        states += (
            f'<linux:systemdunitproperty_state id="oval:t:ste:{name}" version="1">'
            f"<linux:value>{value}</linux:value></linux:systemdunitproperty_state>"
        )
        defs += defn(name, crit(name))
    out = run(doc(tmp_path, defs, tests, objects, states), root)
    assert {k: v[0] for k, v in out.items()} == {
        "cron": "true", "sock": "true", "rsync": "false",
        "active": "true", "inactive": "false", "masked": "true",
    }  # fmt: skip


def _sysctl_doc(tmp_path: Path, name: str) -> Path:
    tests = (
        '<unix:sysctl_test id="oval:t:tst:s" check="all" version="1">'
        '<unix:object object_ref="oval:t:obj:s"/><unix:state state_ref="oval:t:ste:s"/>'
        "</unix:sysctl_test>"
        '<unix:uname_test id="oval:t:tst:u" check="all" version="1">'
        '<unix:object object_ref="oval:t:obj:u"/></unix:uname_test>'
    )
    objects = (
        f'<unix:sysctl_object id="oval:t:obj:s" version="1"><unix:name>{name}</unix:name>'
        '</unix:sysctl_object><unix:uname_object id="oval:t:obj:u" version="1"/>'
    )
    states = (
        '<unix:sysctl_state id="oval:t:ste:s" version="1">'
        '<unix:value datatype="int">2</unix:value></unix:sysctl_state>'
    )
    return doc(tmp_path, defn("s", crit("s")) + defn("u", crit("u")), tests, objects, states)


def test_sysctl_is_the_configured_value_and_run_time_facts_are_not_evaluated(
    tmp_path: Path, root: Path
) -> None:
    path = _sysctl_doc(tmp_path, "kernel.randomize_va_space")
    out = run(path, root)
    assert out["s"][0] == "not evaluated" and "kernel's default" in out["s"][1]
    assert out["u"][0] == "not evaluated"  # the running kernel's uname is not on the disk
    (root / "etc/sysctl.d").mkdir()
    (root / "etc/sysctl.d/10-a.conf").write_text("kernel.randomize_va_space = 0\n")
    assert run(path, root)["s"][0] == "false"
    (root / "etc/sysctl.d/99-b.conf").write_text("kernel/randomize_va_space=2\n")
    assert run(path, root)["s"][0] == "true"  # the later file wins, slashes as dots


def test_pcre_inline_flags_become_scoped_groups() -> None:
    assert pcre_to_python(r"^\s*(?i)FAIL_DELAY(?-i)\s+(\d+)") == r"^\s*(?i:FAIL_DELAY)\s+(\d+)"
    assert pcre_to_python("(?i)^x$") == "(?i)^x$"


def test_a_pattern_that_backtracks_on_hostile_text_is_an_error_in_bounded_time(
    tmp_path: Path, root: Path
) -> None:
    """A pattern that backtracks exponentially on lines of 'x' (nested repeats) is cut at
    1 s of CPU and the test is 'error'."""
    (root / "etc/login.defs").write_text(("x" * 30 + "\n") * 600)
    t, o = tfc_test("slow", "/etc/login.defs", r"^(x+x+)+PASS_WARN_AGE")
    started = time.monotonic()
    result, reason = run(doc(tmp_path, defn("slow", crit("slow")), t, o), root)["slow"]
    assert time.monotonic() - started < 15
    assert result == "error" and "pattern search used over 1 s of CPU" in reason


def test_ssgs_single_line_login_defs_pattern_is_judged_on_hostile_text(
    tmp_path: Path, root: Path
) -> None:
    """SSG's single-line ``.*\\n[^#]*(PASS_WARN_AGE...)`` backtracked cubically on lines
    without '#' (10 KB: 35 s, then cut at 1 s as 'error'): a leading ``.*`` lets only the
    search's resume position start a match (oval_search), so it is judged (false), fast."""
    (root / "etc/login.defs").write_text(("x" * 30 + "\n") * 600)
    t, o = tfc_test("slow", "/etc/login.defs", r".*\n[^#]*(PASS_WARN_AGE\s+\d+)\s*\n")
    o = o.replace('version="1">', 'version="1"><ind:behaviors singleline="true"/>', 1)
    started = time.process_time()
    assert run(doc(tmp_path, defn("slow", crit("slow")), t, o), root)["slow"][0] == "false"
    assert time.process_time() - started < 1
    (root / "etc/login.defs").write_text(("x" * 30 + "\n") * 600 + "PASS_WARN_AGE 7\n")
    assert run(doc(tmp_path, defn("slow", crit("slow")), t, o), root)["slow"][0] == "true"
