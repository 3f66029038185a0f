"""A tiny immutable record base for events, effects and transitions.

Why not ``dataclasses``: importing it pulls in ``inspect`` and costs about
1.7 MB of private memory in every shim process (DESIGN.md section 6); these
records need only equality, hashing, a repr, pattern matching and no writes.
Subclasses list their fields in ``__slots__`` (and the same names in
``__match_args__``) and assign them in ``__init__`` with ``_set``.
"""


class Record:
    __slots__: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"
