"""The messages between the harness process T and the program process S inside the sandbox.

Newline-framed JSON over a pair of pipes. Values cross as plain data that the receiver decodes
itself (``int``, ``float``, ``str``, ``list``, ``tuple``, ``dict``, ``set``, …); anything else
crosses as an opaque handle (:class:`_Proxy`) whose truth value and equality T refuses to take
from S. Each side serves a fixed table of requests about its own objects (``_T_SERVES``,
``_S_SERVES``).

This file runs inside the sandbox, where r1lab is not importable: the payload is its source
followed by :mod:`.runner`'s, so it uses only the standard library's cheap C modules and
imports them where they are used.
"""


class _ProtocolError(Exception):
    """The other process sent something that is not a well-formed message."""


class _RemoteError(Exception):
    """An exception raised by the other process whose type does not exist here."""


class _ProgramGone(Exception):
    """The program process has exited, so nothing more can be asked of it."""


def _scanner():
    import _json

    class _Options:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int

        @staticmethod
        def parse_constant(name):
            raise _ProtocolError(f"bad constant {name}")

    return _json.make_scanner(_Options()), _json.encode_basestring_ascii


class _Channel:
    """Newline-framed JSON messages over a pair of pipes."""

    def __init__(self, rfd, wfd, limit=1 << 26):
        self._reader = open(rfd, "rb", buffering=1 << 16)  # noqa: SIM115 (lives as long as T)
        self._wfd = wfd
        self._limit = limit
        self._scan, _ = _scanner()
        self.closed = False

    def send(self, text):
        import os

        if self.closed:
            raise _ProgramGone("the program has exited")
        data = memoryview((text + "\n").encode("ascii"))
        try:
            while data:
                data = data[os.write(self._wfd, data) :]
        except OSError:
            self.closed = True
            raise _ProgramGone("the program has exited") from None

    def recv(self):
        if self.closed:
            raise _ProgramGone("the program has exited")
        line = self._reader.readline(self._limit)
        if not line:
            self.closed = True
            raise _ProgramGone("the program has exited")
        if not line.endswith(b"\n"):
            self.closed = True
            raise _ProtocolError("message too long")
        try:
            text = line[:-1].decode("ascii")
            value, end = self._scan(text, 0)
        except (StopIteration, ValueError, RecursionError) as e:
            self.closed = True
            raise _ProtocolError(f"malformed message ({type(e).__name__})") from None
        if end != len(text) or type(value) is not list or not value or type(value[0]) is not str:
            self.closed = True
            raise _ProtocolError("malformed message")
        return value


class _Proxy:
    """An object of the other process, known here by a handle.

    Calls, attribute access, iteration, indexing, ``len``, ``str`` and ``repr`` are asked of
    the other process; what it answers is decoded as data. Truth value and comparison are
    refused: taking them from the program would let an object claim to equal anything.
    """

    __slots__ = ("_codec", "_id")

    def __init__(self, codec, hid):
        object.__setattr__(self, "_codec", codec)
        object.__setattr__(self, "_id", hid)

    def __call__(self, *args, **kwargs):
        return self._codec.request("call", self, list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._codec.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._codec.request("setattr", self, name, value)

    def __iter__(self):
        return self._codec.request("iter", self)

    def __next__(self):
        return self._codec.request("next", self)

    def __getitem__(self, key):
        return self._codec.request("getitem", self, key)

    def __len__(self):
        n = self._codec.request("len", self)
        if type(n) is not int:
            raise TypeError("len() of a remote object is not an int")
        return n

    def __repr__(self):
        text = self._codec.request("repr", self)
        return text if type(text) is str else "<remote object>"

    def __str__(self):
        text = self._codec.request("str", self)
        return text if type(text) is str else "<remote object>"

    def __bool__(self):
        raise TypeError("the program returned an object that is not plain data (no truth value)")

    def __eq__(self, other):
        if other is self:
            return True
        raise TypeError("the program returned an object that is not plain data (no comparison)")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__


class _Codec:
    """Values to JSON text and back, plus the request/reply loop over a channel.

    Plain data (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
    frozenset, range) travels as tagged JSON; any other object stays where it is and travels
    as a handle. ``serves`` lists what the other process may ask of this one's objects.
    Decoding builds only the types named here, whatever the text says.
    """

    def __init__(self, channel, serves):
        import builtins

        self.chan = channel
        self.serves = serves
        self._own = {}  # handle -> own object the other process may refer to
        self._handle_of = {}  # id(object) -> handle
        self._proxies = {}  # the other process's handle -> proxy
        self._builtins = builtins
        _, self._quote = _scanner()

    # encoding
    def enc(self, x, depth=0):
        if depth > 200:
            raise RecursionError("value nested too deeply")
        if x is None:
            return "null"
        t = type(x)
        if t is bool:
            return "true" if x else "false"
        if t is str:
            return self._quote(x)
        if t is int:
            return str(x) if -(2**62) < x < 2**62 else f'["I","{x:x}"]'
        if t is float:
            r = float.__repr__(x)
            return r if r[-1].isdigit() else f'["F","{r}"]'
        if t is list or t is tuple:
            tag = "l" if t is list else "t"
            return f'["{tag}"' + "".join("," + self.enc(v, depth + 1) for v in x) + "]"
        if t is dict:
            items = "".join(
                f",[{self.enc(k, depth + 1)},{self.enc(v, depth + 1)}]" for k, v in x.items()
            )
            return f'["d"{items}]'
        if t is _Proxy and x._codec is self:
            return f'["o",{x._id}]'
        if t is _Module:
            return f'["m",{self._quote(x.name)}]'
        for base, plain in _PLAIN:
            if isinstance(x, base) and t is not base:  # subclasses travel as their base's data
                return self.enc(plain(x), depth)
        if t is set or t is frozenset:
            tag = "s" if t is set else "f"
            return f'["{tag}"' + "".join("," + self.enc(v, depth + 1) for v in x) + "]"
        if t is bytes or t is bytearray:
            return f'["{"b" if t is bytes else "y"}","{x.hex()}"]'
        if t is complex:
            return f'["c",{self.enc(x.real)},{self.enc(x.imag)}]'
        if t is range:
            return f'["r",{x.start},{x.stop},{x.step}]'
        if getattr(self._builtins, getattr(x, "__name__", ""), None) is x:
            return f'["B","{x.__name__}"]'  # len, int, str…: the other side has its own
        key = id(x)
        if key not in self._handle_of:
            self._handle_of[key] = len(self._own)
            self._own[len(self._own)] = x
        return f'["h",{self._handle_of[key]}]'

    # decoding
    def dec(self, x, depth=0):
        t = type(x)
        if t is str or t is int or t is float or t is bool or x is None:
            return x
        if t is not list or not x or type(x[0]) is not str or depth > 200:
            raise _ProtocolError("malformed value")
        tag, rest = x[0], x[1:]
        if tag == "l":
            return [self.dec(v, depth + 1) for v in rest]
        if tag == "t":
            return tuple(self.dec(v, depth + 1) for v in rest)
        if tag == "d":
            out = {}
            for pair in rest:
                if type(pair) is not list or len(pair) != 2:
                    raise _ProtocolError("malformed dict")
                out[self.dec(pair[0], depth + 1)] = self.dec(pair[1], depth + 1)
            return out
        if tag == "s":
            return {self.dec(v, depth + 1) for v in rest}
        if tag == "f":
            return frozenset(self.dec(v, depth + 1) for v in rest)
        if len(rest) == 1 and type(rest[0]) is str:
            arg = rest[0]
            try:
                if tag == "I":
                    return int(arg, 16)
                if tag == "F" and arg in ("nan", "inf", "-inf"):
                    return float(arg)
                if tag == "b":
                    return bytes.fromhex(arg)
                if tag == "y":
                    return bytearray.fromhex(arg)
            except ValueError:
                raise _ProtocolError("malformed value") from None
            if tag == "B":
                found = getattr(self._builtins, arg, None)
                if callable(found):
                    return found
            if tag == "m":
                return _import_stdlib(arg)
        if tag == "c" and len(rest) == 2 and all(type(v) in (int, float) for v in rest):
            return complex(rest[0], rest[1])
        if tag == "F" and len(rest) == 1 and type(rest[0]) is str:
            raise _ProtocolError("malformed float")
        if tag == "r" and len(rest) == 3 and all(type(v) is int for v in rest):
            return range(*rest)
        if tag in ("h", "o") and len(rest) == 1 and type(rest[0]) is int:
            hid = rest[0]
            if tag == "o":
                if hid not in self._own:
                    raise _ProtocolError("unknown handle")
                return self._own[hid]
            if hid not in self._proxies:
                self._proxies[hid] = _Proxy(self, hid)
            return self._proxies[hid]
        raise _ProtocolError(f"unknown value tag {tag!r}")

    # requests and replies
    def request(self, op, target, *args):
        parts = "".join("," + self.enc(a) for a in args)
        self.chan.send(f'["{op}",{self.enc(target)}{parts}]')
        return self.wait_reply()

    def wait_reply(self):
        while True:
            msg = self.chan.recv()
            if msg[0] == "ok" and len(msg) == 2:
                return self.dec(msg[1])
            if msg[0] == "err" and len(msg) == 3:
                raise _exception(self._builtins, msg[1], msg[2])
            self.serve(msg)

    def serve(self, msg):
        try:
            if msg[0] not in self.serves or len(msg) < 2:
                raise PermissionError(f"request {msg[0]!r} is not served")
            target = self.dec(msg[1])
            if type(target) is _Proxy or target is None:
                raise _ProtocolError("a request must name an object of this process")
            args = [self.dec(a) for a in msg[2:]]
            result = self.serves[msg[0]](target, *args)
            reply = f'["ok",{self.enc(result)}]'
        except _ProtocolError:
            raise
        except BaseException as e:  # even SystemExit: the program's exit is its answer here
            reply = f'["err",{self._quote(type(e).__name__)},{self._quote(_short(e))}]'
        self.chan.send(reply)


# How an instance of a subclass of a plain type becomes that plain type without asking the
# subclass (whose __str__ or __int__ could say anything).
_PLAIN = (
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (list, list),
    (tuple, tuple),
    (dict, dict),
    (set, set),
    (frozenset, frozenset),
)


def _short(e, limit=400):
    text = str(e)
    return text if len(text) <= limit else text[:limit] + "…"


def _exception(builtins, name, message):
    if type(name) is not str or type(message) is not str:
        return _ProtocolError("malformed error")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return _RemoteError(f"{name}: {message}")


def _import_stdlib(name):
    import sys

    if name.partition(".")[0] not in sys.stdlib_module_names:
        raise _ProtocolError(f"not a standard-library module: {name}")
    __import__(name)
    return sys.modules[name]


def _call(obj, args, kwargs):
    if type(args) is not list or type(kwargs) is not dict:
        raise TypeError("malformed call")
    return obj(*args, **kwargs)


# What T answers when S asks about T's objects (functions and iterators the tests passed in):
# calling them and iterating, never reading their attributes, which would reach T's globals.
def _t_call(obj, args, kwargs):
    if type(obj) is not type(_call):
        raise PermissionError("only functions passed by the tests can be called back")
    return _call(obj, args, kwargs)


_T_SERVES = {"call": _t_call, "iter": iter, "next": next}
_S_SERVES = {
    "call": _call,
    "getattr": getattr,
    "setattr": setattr,
    "iter": iter,
    "next": next,
    "getitem": lambda obj, key: obj[key],
    "len": len,
    "repr": repr,
    "str": str,
}


class _Module:
    """A module the program imported, sent by name: T imports its own copy (stdlib only)."""

    def __init__(self, name):
        self.name = name
