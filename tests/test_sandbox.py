"""The sandbox returns plain data for honest code and ends every attack in bounded time.

Every test also checks that nothing is left behind: no probe file, no process, no zombie.
"""
from __future__ import annotations

import dis
import gc
import glob
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import running
from grader.sandbox import CHILD_SCRIPT, CallResult, Limits, Sandbox, UnsupportedValue, decode, encode, forking

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = Limits(
    call_seconds=1.0, total_seconds=5.0, cpu_seconds=5, memory_bytes=512 * 2**20, output_bytes=4096
)
PROBES = "/tmp/pwned-chain-grader-*"


def fixture_source(kind: str, name: str) -> str:
    text = (FIXTURES / kind / f"{name}.py").read_text()
    return text.replace("__PROJECT_ROOT__", str(PROJECT_ROOT))


def open_sandbox(kind: str, name: str, limits: Limits = FAST) -> Sandbox:
    return Sandbox(fixture_source(kind, name), limits=limits, protected=[PROJECT_ROOT])


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) for every process we can see, read from /proc."""
    table = {}
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as stat_file:
                fields = stat_file.read().rpartition(")")[2].split()
        except OSError:
            continue
        table[int(stat_path.split("/")[2])] = (int(fields[1]), int(fields[3]))
    return table


def own_children() -> set[int]:
    return {pid for pid, (parent, _session) in process_table().items() if parent == os.getpid()}


def session_members(sessions: set[int]) -> set[int]:
    return {pid for pid, (_parent, session) in process_table().items() if session in sessions}


def child_child_module():
    """The child's source as an ordinary module, to test its pieces without starting it."""
    spec = importlib.util.spec_from_file_location("sandbox_child_under_test", CHILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_plain(value: object) -> None:
    """Only the types decode may produce; nothing the student defined."""
    if isinstance(value, np.ndarray):
        assert type(value) is np.ndarray and value.dtype in (np.float64, np.int64)
    elif isinstance(value, list):
        assert type(value) is list
        for item in value:
            assert_plain(item)
    elif isinstance(value, dict):
        assert type(value) is dict
        for key, item in value.items():
            assert type(key) is str
            assert_plain(item)
    else:
        assert value is None or type(value) is float


@pytest.fixture(params=["started", "forked"])
def mode(request):
    """How the sandbox's child comes to be: a fresh interpreter, or forked from a fork server
    (what `grade batch` uses); every defence must hold either way."""
    if request.param == "forked":
        with forking():
            yield request.param
    else:
        yield request.param


@pytest.fixture(autouse=True)
def leaves_nothing_behind(monkeypatch):
    """Every test: no probe file, no leftover child, no member of any child's session."""
    for probe in glob.glob(PROBES):
        os.remove(probe)
    before = own_children()
    seen: set[int] = set()
    original_call = Sandbox.call

    def watched_call(self, *args, **kwargs):
        seen.update(own_children() - before)
        result = original_call(self, *args, **kwargs)
        seen.update(own_children() - before)
        assert_plain(result.value)
        return result

    monkeypatch.setattr(Sandbox, "call", watched_call)
    yield
    assert glob.glob(PROBES) == []
    assert own_children() - before == set()
    assert session_members(seen) == set()


def test_good_solution_returns_plain_values(mode):
    with open_sandbox("code", "good") as box:
        assert box.load_error is None
        assert box.call("dfdx", 3.0) == CallResult("ok", 6.0)
        result = box.call("backward", {"w": 2.0, "b": 0.5}, np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    assert result.status == "ok"
    assert result.value["w"] == pytest.approx(2 * np.mean(np.array([0.5, 0.5]) * [1.0, 2.0]))
    np.testing.assert_allclose(result.value["b"], [1.0])
    assert result.value["b"].dtype == np.float64


def test_float32_arrays_arrive_as_float64_with_shape(mode):
    with open_sandbox("code", "float32") as box:
        result = box.call("gradient", np.arange(6.0).reshape(2, 3))
    assert result.status == "ok"
    assert result.value.dtype == np.float64 and result.value.shape == (2, 3)
    np.testing.assert_array_equal(result.value, 2 * np.arange(6.0).reshape(2, 3))


def test_list_return_with_non_finite_values():
    with open_sandbox("code", "returns_list") as box:
        result = box.call("partials", 1.5, 2.0)
    assert result.status == "ok"
    assert result.value == [3.0, 3.0, float("inf"), [2.0, -2.0]]


def test_honest_use_of_the_standard_library_and_numpy_works(mode):
    with open_sandbox("code", "uses_libraries") as box:
        assert box.load_error is None
        result = box.call("summary", 2.0)
    assert result.status == "ok", result.message
    assert result.value == {
        "norm": pytest.approx(2 * 3**0.5), "solve": 0.5, "fft": 4.0, "mean": 2.0, "fraction": 1.25,
        "factorial": 120.0, "counter": 3.0, "random": 1.0, "shape": 3.0, "testing": 1.0,
    }


def test_output_is_captured_capped_and_kept_from_our_stdout(capfd, mode):
    with open_sandbox("code", "chatty") as box:
        assert box.call("dfdx", 2.0) == CallResult("ok", 4.0)
        output = box.output
    assert output.startswith("debugging line 0: x = 2.0")
    assert output.endswith("... [output truncated]")
    assert len(output.encode()) <= FAST.output_bytes + 30
    assert "debugging" not in capfd.readouterr().out


def test_missing_function_and_student_exceptions_are_errors(mode):
    with open_sandbox("code", "good") as box:
        missing = box.call("gradient", 1.0)
        wrong = box.call("backward", {"w": 1.0}, 1.0, 1.0)
    assert missing == CallResult("error", message="solution.py defines no function `gradient`")
    assert wrong.status == "error"
    assert wrong.message == "KeyError: 'b' (line 10)"
    assert 'File "solution.py", line 10, in backward' in wrong.traceback


def test_timeout_kills_the_child_and_the_next_call_restarts_it(mode):
    with open_sandbox("hostile", "loop_in_call") as box:
        started = time.monotonic()
        assert box.call("dfdx", 1.0) == CallResult("timeout", message="took longer than 1 s")
        assert time.monotonic() - started < 2.0
        assert box.call("identity", 7.0) == CallResult("ok", 7.0)


def test_cpu_limit_kills_a_spinning_child_before_the_wall_clock_does(mode):
    limits = Limits(call_seconds=4.0, total_seconds=5.0, cpu_seconds=1, memory_bytes=512 * 2**20)
    with open_sandbox("hostile", "loop_in_call", limits) as box:
        result = box.call("dfdx", 1.0)
    assert result == CallResult("crash", message="used up the CPU time limit of 1 s")


def test_total_budget_ends_further_calls_at_once(mode):
    limits = Limits(call_seconds=1.0, total_seconds=1.8, cpu_seconds=5, memory_bytes=512 * 2**20)
    with open_sandbox("hostile", "loop_in_call", limits) as box:
        first = box.call("dfdx", 1.0)
        second = box.call("dfdx", 1.0)
        started = time.monotonic()
        third = box.call("identity", 1.0)
    assert first.status == second.status == third.status == "timeout"
    assert "total time budget of 1.8 s" in second.message
    assert "total time budget" in third.message
    assert time.monotonic() - started < 1.5


def test_time_a_started_sandbox_waits_for_its_first_call_is_not_the_students(mode):
    """Sandboxes start early (before sympy is imported, or during the previous submission of a
    batch); the wait until the grader first calls must not eat the submission's total budget."""
    limits = Limits(call_seconds=1.0, total_seconds=1.5, cpu_seconds=5, memory_bytes=512 * 2**20)
    with open_sandbox("code", "good", limits) as box:
        time.sleep(2.0)
        result = box.call("dfdx", 1.0)
    assert result.status == "ok", result.message


def test_infinite_loop_at_import_is_a_load_timeout(mode):
    with open_sandbox("hostile", "loop_at_import") as box:
        assert box.load_error == "loading solution.py took longer than 1 s"
        result = box.call("dfdx", 1.0)
    assert result.status == "timeout"
    assert result.message.startswith("solution.py could not be loaded")


def test_syntax_error_is_a_load_error_with_its_line(mode):
    with Sandbox("def dfdx(x):\n    return (x\n", limits=FAST, protected=[PROJECT_ROOT]) as box:
        assert box.load_error.startswith("SyntaxError: ")
        assert "(line 2)" in box.load_error.splitlines()[0]
        assert box.call("dfdx", 1.0).status == "error"


def test_exit_at_import_is_a_load_crash(mode):
    with Sandbox("import os\nos._exit(5)\n", limits=FAST, protected=[PROJECT_ROOT]) as box:
        assert box.load_error == "the process exited with code 5 instead of answering"
        assert box.call("dfdx", 1.0).status == "crash"


def test_a_child_that_cannot_start_is_reported_with_its_output():
    tiny = Limits(call_seconds=1.0, total_seconds=5.0, cpu_seconds=5, memory_bytes=32 * 2**20)
    with open_sandbox("code", "good", tiny) as box:
        assert box.load_error.startswith("the sandbox did not start: the process exited with code 1")
        assert box.output.startswith("Traceback (most recent call last)")


def test_ignored_sigterm_does_not_save_a_spinning_child(mode):
    with open_sandbox("hostile", "ignore_sigterm") as box:
        assert box.call("dfdx", 1.0).status == "timeout"


@pytest.mark.parametrize("name", ["memory_bytearray", "memory_list"])
def test_memory_hogs_hit_the_limit(name, mode):
    with open_sandbox("hostile", name) as box:
        result = box.call("dfdx", 1.0)
    assert result.status in ("error", "crash")
    assert "MemoryError" in result.message or "memory" in result.message


def test_exit_during_a_call_is_a_crash_and_the_sandbox_recovers(mode):
    with open_sandbox("hostile", "exit_in_call") as box:
        first = box.call("dfdx", 1.0)
        second = box.call("dfdx", 1.0)
    assert first == CallResult("crash", message="the process exited with code 0 instead of answering")
    assert second.status == "crash"


def test_sys_exit_is_reported_as_an_error(mode):
    with open_sandbox("hostile", "sys_exit") as box:
        result = box.call("dfdx", 1.0)
    assert result.status == "error" and result.message == "SystemExit: 3 (line 6)"


def test_forged_report_is_only_captured_text(capfd, mode):
    with open_sandbox("hostile", "forged_report") as box:
        result = box.call("dfdx", 1.0)
        output = box.output
    assert result == CallResult("ok", 0.0)
    assert '"score": 100' in output and '"ok"' in output
    assert "score" not in capfd.readouterr().out


def test_garbage_on_the_result_pipe_is_a_crash_then_a_fresh_child_answers(mode):
    with open_sandbox("hostile", "garbage_result_fd") as box:
        garbage = box.call("dfdx", 1.0)
        assert box.call("identity", 5.0) == CallResult("ok", 5.0)
    assert garbage == CallResult("crash", message="sent garbage instead of a reply")


def test_lying_objects_become_plain_data_or_errors(mode):
    with open_sandbox("hostile", "lying_objects") as box:
        liar = box.call("liar", 1.0)
        lying_float = box.call("lying_float", 1.0)
        liar_array = box.call("liar_array", 1.0)
        liar_in_dict = box.call("liar_in_dict", 1.0)
    assert liar.status == "error" and "unsupported value (Liar)" in liar.message
    assert lying_float.status == "error" and "(LyingFloat)" in lying_float.message
    assert liar_in_dict.status == "error"
    assert liar_array.status == "ok"
    assert type(liar_array.value) is np.ndarray
    np.testing.assert_array_equal(liar_array.value.ravel(), [2.0, 2.0])


def test_monkeypatched_numpy_stays_in_the_child(mode):
    with open_sandbox("hostile", "monkeypatch_numpy") as box:
        result = box.call("dfdx", 1.0)
    assert result.status == "ok" and type(result.value) is np.ndarray
    np.testing.assert_array_equal(result.value, np.zeros(3))
    assert not np.allclose([0.0], [1.0])
    assert isinstance(np.zeros(1), np.ndarray)


def call_each(kind: str, name: str, entries: list[str]) -> dict[str, CallResult]:
    """One sandbox, several attacks: an error in one call must not shield the next."""
    with open_sandbox(kind, name) as box:
        return {entry: box.call(entry, 1.0) for entry in entries}


def test_project_packages_cannot_be_imported(mode):
    results = call_each("hostile", "import_grader", ["import_grader", "import_reference", "import_cli"])
    for entry, result in results.items():
        assert result.status == "error", entry
        assert "forbids importing" in result.message or "No module named" in result.message, entry


def test_project_files_and_other_processes_cannot_be_read(mode):
    entries = [
        "read_grade", "read_package", "read_relative_to_directory", "list_project",
        "read_parent_memory", "read_raw_disk",
    ]
    for entry, result in call_each("hostile", "read_grader_source", entries).items():
        assert result.status == "error", entry
        assert result.message.startswith("PermissionError: the grader's sandbox forbids"), entry


def test_files_cannot_be_written(mode):
    entries = ["write_open", "write_os_open", "write_pathlib", "make_directory"]
    for entry, result in call_each("hostile", "write_file", entries).items():
        assert result.status == "error" and result.message.startswith("PermissionError"), entry


def test_programs_cannot_be_started(mode):
    entries = ["run_touch", "run_system", "run_exec", "run_posix_spawn"]
    for entry, result in call_each("hostile", "run_subprocess", entries).items():
        assert result.status == "error" and result.message.startswith("PermissionError"), entry


def test_fork_is_refused_and_no_orphan_survives(mode):
    with open_sandbox("hostile", "fork_orphan") as box:
        result = box.call("dfdx", 1.0)
    assert result.status == "error" and "os.fork" in result.message


def test_sockets_cannot_reach_the_grader_machine(mode):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        with open_sandbox("hostile", "socket_connect") as box:
            result = box.call("connect", listener.getsockname()[1])
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.status == "error" and result.message.startswith("PermissionError")


def test_the_audit_hook_cannot_be_rewritten(mode):
    results = call_each("hostile", "disable_hook", ["replace_code", "replace_defaults"])
    for entry, result in results.items():
        assert result.status == "error", entry
        assert result.message.startswith("PermissionError: the grader's sandbox forbids rewriting")


def test_ctypes_and_signals_are_refused(mode):
    refused = ["import_ctypes", "numpy_ctypes", "signal_parent"]
    results = call_each("hostile", "ctypes_escape", [*refused, "pidfd_signal_parent"])
    for entry in refused:
        assert results[entry].status == "error", entry
        assert results[entry].message.startswith("PermissionError"), entry
    assert results["pidfd_signal_parent"].status == "error"
    assert results["pidfd_signal_parent"].message.startswith(
        "AttributeError: module 'os' has no attribute 'pidfd_open'"
    )


def test_attacks_at_import_all_fail_and_the_module_still_loads(capfd, mode):
    with open_sandbox("hostile", "attacks_at_import") as box:
        assert box.load_error is None
        assert box.call("succeeded", 0.0) == CallResult("ok", 0.0)
        assert box.call("dfdx", 2.0) == CallResult("ok", 4.0)
        assert '"score": 100' in box.output
    assert "score" not in capfd.readouterr().out


def test_the_child_reports_its_defences_before_student_code(mode):
    with open_sandbox("code", "good") as box:
        defences = box.defences
    assert defences["audit_hook"] is True
    if os.geteuid() == 0:
        assert defences == {
            "network": True, "processes": True, "filesystem": True, "capabilities": True,
            "audit_hook": True,
        }


def test_closed_sandbox_refuses_calls_and_removes_its_directory(mode):
    before = own_children()
    box = open_sandbox("code", "good")
    with box:
        (child,) = own_children() - before
        workdir = os.readlink(f"/proc/{child}/cwd")
        assert os.path.isdir(workdir) and os.listdir(workdir) == []
    assert not os.path.exists(workdir)
    with pytest.raises(RuntimeError):
        box.call("dfdx", 1.0)


def test_a_sandbox_never_closed_is_cleaned_up_when_collected(mode):
    before = own_children()
    box = open_sandbox("code", "good")
    assert box.call("dfdx", 1.0).status == "ok"
    (child,) = own_children() - before
    workdir = os.readlink(f"/proc/{child}/cwd")
    del box
    gc.collect()
    assert not os.path.exists(workdir)


def test_encode_and_decode_agree_on_plain_data():
    child = child_child_module()
    kit = child.numpy_kit(np)
    labels = np.array([[0, 2], [1, 1]])
    argument = {"w": np.array([1.0, -np.inf, np.nan]), "labels": labels, "n": 3, "xs": [0.5, (1.5,)]}
    received = child.decode(json.loads(json.dumps(encode(argument))), kit)
    assert received["labels"].dtype == np.int64 and received["labels"].flags.writeable
    np.testing.assert_array_equal(received["labels"], labels)
    assert received["n"] == 3 and type(received["n"]) is int
    assert received["xs"] == [0.5, [1.5]]
    back = decode(json.loads(json.dumps(child.encode(received["w"], kit))))
    np.testing.assert_array_equal(back, [1.0, -np.inf, np.nan])
    assert decode(json.loads(json.dumps(child.encode(np.float32(2.5), kit)))) == 2.5
    assert decode(child.encode(np.array(4.0), kit)).shape == ()


@pytest.mark.parametrize(
    "reply",
    [
        True,
        {"f": True},
        {"f": "Infinity"},
        {"f": 1.0, "extra": 1},
        {"a": [1.0, 2.0], "s": [3]},
        {"a": [[1.0], [2.0, 3.0]], "s": [2, 1]},
        {"a": [1.0, "1e3"], "s": [2]},
        {"a": [1.0], "s": [True]},
        {"i": [1.5], "s": [1]},
        {"i": [2**63], "s": [1]},
        {"l": {"f": 1.0}},
        {"d": [1.0]},
        {"q": 1.0},
        {"f": 10**400},
    ],
)
def test_decode_rejects_anything_outside_the_format(reply):
    with pytest.raises(ValueError):
        decode(reply)


def test_decode_bounds_depth_and_reports_unsupported_types():
    deep: dict = {"f": 1.0}
    for _ in range(40):
        deep = {"l": [deep]}
    with pytest.raises(ValueError, match="deeply"):
        decode(deep)
    with pytest.raises(UnsupportedValue):
        decode({"l": [{"x": "Liar"}]})


def test_the_audit_hook_looks_up_no_global_name():
    """Student code can rebind module globals and builtins, so the hook must not read any."""
    child = child_child_module()
    check = child.make_path_check(("/usr",), frozenset(), ("/usr/share/secret",))
    hook = child.make_audit_hook(check)
    for function in (check, hook):
        loads = {instruction.opname for instruction in dis.get_instructions(function)}
        assert not loads & {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF"}


def test_the_path_check_follows_symlinks_and_refuses_relative_paths(tmp_path):
    child = child_child_module()
    library = tmp_path / "library"
    secret = tmp_path / "project"
    library.mkdir()
    secret.mkdir()
    (secret / "answers.py").write_text("x = 1")
    (library / "link").symlink_to(secret)
    guarded = library / "grader"
    allowed = child.make_path_check((str(library),), frozenset({"/dev/null"}), (str(guarded),))
    assert allowed(str(library / "module.py"))
    assert not allowed(str(guarded / "grade.py"))
    assert allowed("/dev/null")
    assert not allowed(str(library / "link" / "answers.py"))
    assert not allowed(str(library / ".." / "project" / "answers.py"))
    assert not allowed("library/module.py")
    assert not allowed(str(library).encode())


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and capabilities need root")
def test_kernel_level_defences_hold_without_the_audit_hook():
    """Run only the child's limits and isolation (no hook), then attack: the kernel must refuse."""
    probe = f"""
import json, os, socket
import runpy
child = runpy.run_path({str(CHILD_SCRIPT)!r})
root = {str(PROJECT_ROOT)!r}
ctypes, libc = child["open_libc"]()
defences = child["enter_namespaces"](libc)
request_read, request_write = os.pipe()
result_read, result_write = os.pipe()
child["run_in_pid_namespace"](child["Channel"](request_read, result_write), libc, os.getppid())
child["set_limits"](10, 512 * 2**20)
roots = child["library_roots"]((root,))
defences["filesystem"] = child["lock_filesystem"](libc, (root,), roots + (os.getcwd(),))
defences["capabilities"] = child["drop_capabilities"](libc, ctypes)
outcomes = {{"defences": defences, "pid": os.getpid(), "parent": os.getppid()}}
def attempt(name, action):
    try:
        action()
        outcomes[name] = "succeeded"
    except OSError as error:
        outcomes[name] = error.__class__.__name__
attempt("read_project", lambda: open(os.path.join(root, "grader", "__init__.py")).read())
attempt("write_tmp", lambda: open("/tmp/pwned-chain-grader-kernel", "w").close())
disk = "/dev/vda" if os.path.exists("/dev/vda") else "/dev/null"
attempt("raw_disk", lambda: open(disk, "rb").read(1))
attempt("grader_memory", lambda: open("/proc/{os.getpid()}/mem", "rb").read(1))
attempt("signal_grader", lambda: os.kill({os.getpid()}, 0))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 9), timeout=0.5))
outcomes["shell_write"] = os.system("touch /tmp/pwned-chain-grader-kernel-shell")
outcomes["unmount_project"] = libc.umount2(root.encode(), 2)
print(json.dumps(outcomes), flush=True)
"""
    completed = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=20, cwd="/tmp"
    )
    assert completed.returncode == 0, completed.stderr
    outcomes = json.loads(completed.stdout)
    assert outcomes["defences"] == {
        "network": True, "processes": True, "filesystem": True, "capabilities": True,
    }
    assert (outcomes["pid"], outcomes["parent"]) == (2, 1)
    assert outcomes["read_project"] == "FileNotFoundError"
    assert outcomes["write_tmp"] in ("OSError", "PermissionError")
    assert outcomes["raw_disk"] == "PermissionError"
    assert outcomes["grader_memory"] == "FileNotFoundError"
    assert outcomes["signal_grader"] == "ProcessLookupError"
    assert outcomes["connect"] == "OSError"
    assert outcomes["shell_write"] != 0
    assert outcomes["unmount_project"] == -1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server needs Linux")
def test_the_fork_server_dies_with_its_grader_and_leaves_no_trace():
    """A batch worker killed mid-run must not leave its fork server behind."""
    probe = f"""
import os, sys
sys.path.insert(0, {str(PROJECT_ROOT)!r})
from grader import forkserver
from grader.sandbox import forking
with forking():
    print(forkserver._servers[os.getpid()].process.pid, flush=True)
    os._exit(9)
"""
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    server = int(completed.stdout)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{server}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{server}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server needs Linux")
def test_leaving_forking_stops_the_server_and_the_subreaper_role():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    role = ctypes.c_int(-1)
    before = own_children()
    with forking():
        (server,) = own_children() - before
        libc.prctl(37, ctypes.byref(role), 0, 0, 0)
        assert role.value == 1
    libc.prctl(37, ctypes.byref(role), 0, 0, 0)
    assert role.value == 0
    assert not os.path.exists(f"/proc/{server}") or server not in own_children()


@pytest.mark.skipif(os.geteuid() != 0, reason="the outer process watches its parent only with a PID namespace (root)")
@pytest.mark.parametrize("forked", [False, True], ids=["started", "forked"])
def test_student_code_dies_with_a_killed_grader(forked: bool):
    """A grader killed mid-call (out of memory, SIGKILL) must not leave the student's loop running
    until its 30 s CPU limit: the sandbox's outer process sees its parent go and ends the namespace."""
    probe = f"""
import contextlib, os, sys
sys.path.insert(0, {str(PROJECT_ROOT)!r})
from grader.sandbox import Limits, Sandbox, forking
with forking() if {forked!r} else contextlib.nullcontext():
    sandbox = Sandbox("def spin():\\n    while True:\\n        pass\\n", limits=Limits(), protected=[])
    sandbox.__enter__()
    print(os.getsid(0), flush=True)
    sandbox.call("spin")
"""
    grader = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True)
    grader_session = int(grader.stdout.readline())
    time.sleep(1.0)
    sandboxes = {pid for pid, (parent, _session) in process_table().items() if parent == grader.pid}
    members = session_members(sandboxes) - {grader.pid}
    assert members, "the sandbox should be running the student's loop"
    assert grader_session not in sandboxes
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 5
    while running(session_members(sandboxes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(session_members(sandboxes)), "the student's processes outlived the grader"

