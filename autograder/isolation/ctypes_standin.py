"""Stand-in for ``ctypes`` inside the grading sandbox: no foreign function can be called from here.

Libraries that only name ctypes types at import time (NumPy, SciPy) still import; anything that would reach
native code raises.
"""

_WHY = "ctypes is not available while grading (no foreign function can be called in the sandbox)"


class _CData:
    """Any ctypes type: it exists, but no instance can be made."""

    def __new__(cls, *args, **kwargs):
        raise RuntimeError(_WHY)

    @classmethod
    def from_address(cls, *args, **kwargs):
        raise RuntimeError(_WHY)

    from_buffer = from_buffer_copy = in_dll = from_param = from_address

    def __call__(self, *args, **kwargs):
        raise RuntimeError(_WHY)


class _CFuncPtr(_CData):
    pass


class Structure(_CData):
    pass


class Union(_CData):
    pass


class Array(_CData):
    pass


class _Pointer(_CData):
    pass


def _type(name):
    return type(name, (_CData,), {})


for _name in ("c_bool", "c_char", "c_wchar", "c_byte", "c_ubyte", "c_short", "c_ushort", "c_int", "c_uint",
              "c_long", "c_ulong", "c_longlong", "c_ulonglong", "c_size_t", "c_ssize_t", "c_float", "c_double",
              "c_longdouble", "c_char_p", "c_wchar_p", "c_void_p", "c_int8", "c_int16", "c_int32", "c_int64",
              "c_uint8", "c_uint16", "c_uint32", "c_uint64", "py_object"):
    globals()[_name] = _type(_name)


def CFUNCTYPE(restype, *argtypes, **kwargs):
    return type("CFunctionType", (_CFuncPtr,), {"_restype_": restype, "_argtypes_": argtypes})


PYFUNCTYPE = CFUNCTYPE


def _refuse(*args, **kwargs):
    raise RuntimeError(_WHY)


def POINTER(target):
    return type(f"LP_{getattr(target, '__name__', 'c')}", (_Pointer,), {"_type_": target})


def cast(obj, target):
    """An inert value of ``target`` (libraries cast addresses at import time); it cannot be called or read."""
    value = object.__new__(target) if isinstance(target, type) and issubclass(target, _CData) else None
    if value is not None:
        value.value = obj if isinstance(obj, int) else None
    return value


pointer = sizeof = alignment = addressof = byref = memmove = memset = string_at = _refuse
create_string_buffer = CDLL = PyDLL = LoadLibrary = _refuse


class _Loader:
    def __getattr__(self, name):
        raise AttributeError(f"{name}: {_WHY}")


cdll = pydll = pythonapi = _Loader()
