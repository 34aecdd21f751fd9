"""The sandboxed inspection worker, started by
:class:`~vmwarden.inspect.sandbox.InspectorPool` as ``python -I -B -c BOOT ROOT FD``.

``-I`` (isolated): neither the parent's working directory nor ``PYTHONPATH`` is on
``sys.path``, so nothing the parent's cwd holds is imported or trusted; ``ROOT`` is the
directory holding the very ``vmwarden`` package the parent runs, and ``FD`` one end of a Unix
socket pair. It imports dissect.target once (the ~1 s cost is paid per worker, not per
image), then confines itself before it reads any guest byte:

1. ``PR_SET_NO_NEW_PRIVS``; if root: its own, empty network namespace (no interface but a
   down loopback: no network at all), no supplementary groups, gid and uid of an
   unprivileged user (``nobody`` by default). It needs no file access of its own: the parent
   opens the image files and passes the descriptors over the socket.
2. ``RLIMIT_AS`` (memory) and ``RLIMIT_CPU`` (soft limit re-armed for each image: the
   kernel sends ``SIGXCPU``, which ends the worker; the parent reports it and replaces it).
   ``RLIMIT_CORE`` 0 and ``RLIMIT_NOFILE`` :data:`MAX_FILES`.
3. An audit hook that refuses every ``open``/``listdir`` of a host path outside the Python
   installation's library directories and ``ROOT`` (never the cwd, never ``/``): even a
   dissect bug that built a host path could not read it; and refuses network sockets,
   ``connect``/``bind``, name lookups and starting programs (the only barrier when not
   root, a second one when root).

Then it serves requests: ``{"image": name}`` plus the layers' descriptors (for another
host's layers, ``"served": [size, ...]`` and sockets the parent answers range reads on:
:mod:`~vmwarden.inspect.served`) →
``{"ok": true, "facts": {...}, "stats": {...}}`` or ``{"ok": false, "error": reason}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import resource
import socket
import sys
import time
from typing import Any

from vmwarden.inspect import wire

PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
CLONE_NEWNET = 0x40000000
#: Descriptors a worker may hold: stdio, its socket, one request's layers (wire.MAX_FDS = 32).
MAX_FILES = 64
_CONFINED: dict[str, Any] = {"prefixes": ()}
#: What the parent's ``BOOT`` line passed as ``ROOT`` (the package's parent directory).
_ROOT: dict[str, str] = {}


def _prctl(option: int, value: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the other limits still apply
        pass


#: Modules imported lazily by dissect or the readers; loaded before privileges are dropped,
#: because the unprivileged user may not be able to read Python's own library (e.g. a
#: pyenv build under /root).
PRELOAD = (
    "importlib",
    "importlib.util",
    "importlib.metadata",
    "zlib",
    "lzma",
    "bz2",
    "gzip",
    "json",
    "configparser",
    "fnmatch",
    "shlex",
    "hmac",
    "base64",
    "uuid",
    "zoneinfo",
    "yaml",
    "dissect.database.sqlite3",
    "dissect.volume.disk.schemes",
    "dissect.extfs",
    "dissect.xfs",
    "dissect.btrfs",
    "dissect.ntfs",
    "dissect.fat",
    "dissect.regf",  # Windows guests' registry hives (vmwarden.inspect.guest.windows)
    "dissect.hypervisor.disk.qcow2",
    "dissect.hypervisor.disk.vmdk",
    "dissect.hypervisor.disk.vhdx",
)


def _preload() -> None:
    import encodings
    import importlib
    import pkgutil

    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    for info in pkgutil.iter_modules(encodings.__path__):
        with contextlib.suppress(ImportError, LookupError):
            importlib.import_module(f"encodings.{info.name}")


def warm_up() -> None:
    """Import everything dissect will need, so that the first image costs no import time."""
    _preload()
    import dissect.target.container
    import dissect.target.filesystem
    import dissect.target.volume
    from dissect.target import Target, plugin
    from dissect.target.filesystem import VirtualFilesystem

    import vmwarden.inspect.facts  # noqa: F401 - the readers and their imports

    for registry in (dissect.target.container.CONTAINERS, dissect.target.filesystem.FILESYSTEMS):
        for cls in registry:
            with contextlib.suppress(ImportError):
                getattr(cls, "__type__", None)  # resolves the lazy import
    for name in ("disk", "lvm", "luks", "md"):
        with contextlib.suppress(ImportError):
            getattr(dissect.target.volume, name).__name__  # noqa: B018 - lazy import
    # OS detection loads the plugin index; do it once on an empty virtual filesystem.
    target = Target()
    vfs = VirtualFilesystem()
    vfs.makedirs("/etc")
    target.filesystems.add(vfs)
    # Nothing to find in an empty filesystem; the plugin index is loaded all the same.
    with contextlib.suppress(Exception):
        target._init_os()
    plugin.plugins()


def _own_network_namespace() -> str:
    """Leave the host's network: a new namespace has only a loopback, and it is down.

    Needs CAP_SYS_ADMIN, so only when started as root (before the uid is dropped); otherwise
    the audit hook's socket refusals are what keeps the worker off the network."""
    if os.geteuid() != 0:
        return "audit hook only (not root: no namespace of its own)"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot create a network namespace: {os.strerror(err)}")
    return "own namespace"


def confine(config: dict[str, Any]) -> dict[str, Any]:
    """Drop privileges and set limits; returns what was done (reported to the parent)."""
    done: dict[str, Any] = {}
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.chdir("/")
    done["network"] = _own_network_namespace()
    # Before the uid changes: an unprivileged user may not even see the library directories
    # (e.g. a pyenv build under /root); they stay listed, and unreadable, all the same.
    _CONFINED["prefixes"] = _library_prefixes()
    uid, gid = config.get("uid"), config.get("gid")
    if os.geteuid() == 0 and uid is not None and gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _prctl(PR_SET_DUMPABLE, 0)
    done["uid"], done["gid"] = os.geteuid(), os.getegid()
    memory = int(config.get("memory_mb") or 0)
    if memory > 0:
        limit = memory * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        done["memory_mb"] = memory
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_FILES, MAX_FILES))
    done["max_files"] = MAX_FILES
    sys.addaudithook(_deny_host_files)
    done["audit"] = True
    done["readable"] = list(_CONFINED["prefixes"])
    return done


def _library_prefixes() -> tuple[str, ...]:
    """Where late imports may read: the installation's library directories and ``ROOT``.

    Built from the install (sysconfig, site-packages, ``ROOT``) and the ``sys.path`` that
    ``-I`` leaves (which holds neither the cwd nor ``PYTHONPATH``); a relative entry, the
    cwd and ``/`` itself are never a prefix, whatever they are — with cwd ``/`` on
    ``sys.path``, every host file would have been "a library".
    """
    import site
    import sysconfig

    dirs = {sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.update(sys.path)
    if _ROOT.get("root"):
        dirs.add(_ROOT["root"])
    cwd = os.path.realpath(os.getcwd())
    prefixes = set()
    for d in dirs:
        if not d or not os.path.isabs(d) or not os.path.isdir(d):
            continue
        real = os.path.realpath(d)
        if real in ("/", cwd):
            continue
        prefixes.add(real.rstrip("/") + "/")
    return tuple(sorted(prefixes))


#: Network and process events refused outright once confined (the worker's own socket was
#: made before, and sends to its connected peer carry no address).
_NETWORK_EVENTS = frozenset(
    {
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "subprocess.Popen",
    }
)


def _deny_host_files(event: str, args: tuple[Any, ...]) -> None:
    if event in _NETWORK_EVENTS:
        raise PermissionError(f"inspection worker may not use the network or run programs: {event}")
    if event == "socket.__new__" and len(args) > 1 and args[1] != socket.AF_UNIX:
        raise PermissionError("inspection worker may not open network sockets")
    if event in ("socket.sendto", "socket.sendmsg") and len(args) > 1 and args[1] is not None:
        raise PermissionError("inspection worker may not send to an address")
    if event not in ("open", "os.listdir", "os.scandir"):
        return
    target = args[0] if args else None
    if target is None or isinstance(target, int):
        return  # descriptors the parent passed, or the current directory's listing
    path = os.path.realpath(os.fsdecode(target))
    if (path + "/").startswith(_CONFINED["prefixes"]):  # imports (a module loaded late)
        mode = args[1] if event == "open" and len(args) > 1 else "r"
        if not isinstance(mode, str) or not any(c in mode for c in "wax+"):
            return
    raise PermissionError(f"inspection worker may not open host path {path}")


def arm_cpu_limit(seconds: float) -> None:
    """Allow ``seconds`` more CPU time from now (soft limit; SIGXCPU ends the worker)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (used + max(1, int(seconds)), resource.RLIM_INFINITY))


def handle(request: dict[str, Any], fds: list[int], config: dict[str, Any]) -> dict[str, Any]:
    from vmwarden.errors import InspectError
    from vmwarden.inspect.facts import inspect_layers
    from vmwarden.inspect.served import ServedSource

    formats = request.get("formats") or []
    if len(formats) != len(fds) or not fds:
        return {"ok": False, "error": "bad request: layers and descriptors differ"}
    # Another host's layers: the descriptor is a socket the parent answers range reads on.
    served = request.get("served") or [None] * len(fds)
    if len(served) != len(fds):
        return {"ok": False, "error": "bad request: layers and descriptors differ"}
    sources: list[int | ServedSource] = [
        fd if size is None else ServedSource(fd, int(size))
        for fd, size in zip(fds, served, strict=True)
    ]
    image = str(request.get("image"))
    arm_cpu_limit(float(config.get("cpu_seconds") or 120))
    key = bytes.fromhex(config["fingerprint_key"])
    kind = request.get("kind")
    try:
        if config.get("test_hooks"):
            _test_hook(os.path.basename(image))
        if kind is not None:  # another layer's request (OVAL): a module its pool named
            module = (config.get("handlers") or {}).get(str(kind))
            if module is None:
                return {"ok": False, "error": f"bad request: unknown kind {kind!r}"}
            layers = list(zip(sources, formats, strict=True))
            answer: dict[str, Any] = importlib.import_module(module).handle(request, layers, image)
            return answer
        facts, stats = inspect_layers(
            list(zip(sources, formats, strict=True)),
            image=image,
            fingerprint_key=key,
            encrypted=bool(request.get("encrypted")),
        )
    except InspectError as exc:
        return {"ok": False, "error": str(exc)}
    except MemoryError:
        return {"ok": False, "error": "memory limit exceeded", "restart": True}
    except RecursionError:
        return {"ok": False, "error": "image structure nested too deeply", "restart": True}
    except Exception as exc:  # the worker's boundary: anything else is "uninspectable"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "facts": facts.to_dict(), "stats": stats}


def _test_hook(name: str) -> None:
    """Pathological behaviour on demand, for the pool's own tests (never enabled otherwise)."""
    if name.startswith("hang-"):
        while True:
            time.sleep(3600)
    if name.startswith("spin-"):
        while True:
            pass
    if name.startswith("oom-"):
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))
    if name.startswith("peek-"):  # a reader tricked into opening a host file
        with open("/etc/hostname", "rb") as fh:
            fh.read()
    if name.startswith("net-"):  # a reader tricked into calling home
        socket.create_connection(("127.0.0.1", int(name.split("-")[1])), timeout=2).close()


def serve(sock: socket.socket) -> int:
    config, _ = wire.recv(sock)
    warm_up()
    for module in (config.get("handlers") or {}).values():  # imported before confinement
        importlib.import_module(module)
    done = confine(config)
    wire.send(sock, {"ready": True, "pid": os.getpid(), **done})
    while True:
        try:
            request, fds = wire.recv(sock)
        except wire.WireClosed:
            return 0
        try:
            response = handle(request, fds, config)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        wire.send(sock, response)
        if response.get("restart"):
            return 3


def main(argv: list[str]) -> int:
    """``argv``: ``[ROOT, FD]`` (``ROOT``: where the parent's vmwarden package lives)."""
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: started by InspectorPool (python -I -B -c BOOT ROOT FD)")
        return 2
    _ROOT["root"] = argv[0]
    sock = socket.socket(fileno=int(argv[1]))
    try:
        return serve(sock)
    except (wire.WireClosed, BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
