"""pandas' missing value NA (pandas is not installed here), as a nullable column ("string",
"Int64", pyarrow's) holds it where a cell is empty: equal to nothing, not even itself, since its
== answers NA, whose truth is ambiguous."""


class _NAType:
    def __eq__(self, other):
        return self

    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__

    def __bool__(self):
        raise TypeError("boolean value of NA is ambiguous")

    def __hash__(self):
        return 2 ** 61 - 1

    def __repr__(self):
        return "<NA>"


NA = _NAType()
