"""A label text that counts its equality tests, to show that labels are looked up (hashed), not
compared with every class: what makes a 10,000-class task's per-label work linear."""


def counting_label_class(compared: list):
    """A str subclass whose every == appends to `compared`."""

    class Label(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            compared.append(1)
            return str.__eq__(self, other)

    return Label
