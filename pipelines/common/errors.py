"""The error every stage raises for a bad params file (shared by the loader and the schema)."""

from model.runtime.errors import InputError


class ParamsError(InputError, KeyError, ValueError):
    """A key of params.yaml is missing, unknown or has an unusable value (also a KeyError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0])
