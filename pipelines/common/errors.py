"""The error every stage raises for a bad params file (shared by the loader and the schema)."""


class ParamsError(KeyError, ValueError):
    """A key of params.yaml is missing, unknown or has an unusable value (a KeyError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0])
